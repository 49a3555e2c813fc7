-- gen_lb.consul: a small HTTP/1.1 client for Consul's API on cosockets.
--
-- One client talks to one Consul address and keeps one connection open
-- between requests (a watcher loop is its only user, so no pool is needed).
-- Every read has a deadline for the whole response, not just per packet, so
-- a server that trickles bytes cannot hold a request past it; bodies are
-- capped. Content-Length, chunked and read-until-close bodies are handled.
-- The ACL token is read from the environment at request time and only ever
-- sent in the X-Consul-Token header.
--
-- Owns its connection; touches no shared dict (the watcher owns what it reads).
local ngx = ngx
local tcp = ngx.socket.tcp
local now = ngx.now
local update_time = ngx.update_time
local os_getenv = os.getenv
local concat = table.concat
local find = string.find
local sub = string.sub
local lower = string.lower
local match = string.match
local floor = math.floor
local max = math.max
local min = math.min
local tonumber = tonumber
local tostring = tostring
local setmetatable = setmetatable

local _M = { _VERSION = "0.1.0" }
local mt = { __index = _M }

--- The largest answer body a client takes (a health list of thousands of instances fits).
_M.MAX_BODY = 4 * 1024 * 1024
local MAX_HEADER_BYTES = 64 * 1024
local READ_CHUNK = 64 * 1024

local function is_ip(host)
  return match(host, "^%d+%.%d+%.%d+%.%d+$") ~= nil or find(host, ":", 1, true) ~= nil
end
_M.is_ip = is_ip

--- opts: address = {scheme, host, port}, timeout (s), ssl_verify, token_env, max_body (bytes), user_agent
function _M.new(opts)
  local a = opts.address
  local host = a.host
  local label = a.scheme .. "://" .. (find(host, ":", 1, true) and "[" .. host .. "]" or host) .. ":" .. a.port
  return setmetatable({
    scheme = a.scheme,
    host = host,
    port = a.port,
    -- cosockets resolve names only through a `resolver`; localhost needs none.
    connect_host = host == "localhost" and "127.0.0.1" or host,
    host_header = (find(host, ":", 1, true) and "[" .. host .. "]" or host) .. ":" .. a.port,
    label = label,
    timeout_ms = floor(opts.timeout * 1000),
    ssl_verify = opts.ssl_verify,
    token_env = opts.token_env,
    max_body = opts.max_body,
    user_agent = opts.user_agent,
    sock = nil,
  }, mt)
end

function _M.close(self)
  local sock = self.sock
  self.sock = nil
  if sock then
    sock:close()
  end
end

local function connect(self)
  local sock = tcp()
  sock:settimeouts(self.timeout_ms, self.timeout_ms, self.timeout_ms)
  local ok, err = sock:connect(self.connect_host, self.port)
  if not ok then
    return nil, "connect failed: " .. tostring(err)
  end
  if self.scheme == "https" then
    -- SNI and the name check only make sense for names, not IP literals.
    local server_name = not is_ip(self.host) and self.host or nil
    local session
    session, err = sock:sslhandshake(nil, server_name, self.ssl_verify)
    if not session then
      sock:close()
      return nil, "TLS handshake failed: " .. tostring(err)
    end
  end
  return sock
end

-- A buffered reader over the socket with one deadline for the whole response.
local function remaining_ms(deadline)
  update_time()
  return floor((deadline - now()) * 1000)
end

local function fill(r, want)
  local left = remaining_ms(r.deadline)
  if left <= 0 then
    return nil, "timeout"
  end
  r.sock:settimeouts(r.connect_ms, r.connect_ms, left)
  local data, err = r.sock:receiveany(want or READ_CHUNK)
  if not data then
    return nil, err
  end
  r.got_any = true
  return data
end

local function read_line(r)
  while true do
    local i = find(r.buf, "\r\n", r.pos, true)
    if i then
      local line = sub(r.buf, r.pos, i - 1)
      r.pos = i + 2
      return line
    end
    if #r.buf - r.pos > MAX_HEADER_BYTES then
      return nil, "header line too long"
    end
    local data, err = fill(r)
    if not data then
      return nil, err
    end
    r.buf = sub(r.buf, r.pos) .. data
    r.pos = 1
  end
end

-- Appends exactly n bytes to parts.
local function read_exact(r, n, parts)
  local buffered = #r.buf - r.pos + 1
  if buffered > 0 then
    local take = min(buffered, n)
    parts[#parts + 1] = sub(r.buf, r.pos, r.pos + take - 1)
    r.pos = r.pos + take
    n = n - take
  end
  while n > 0 do
    local data, err = fill(r, min(n, READ_CHUNK))
    if not data then
      return nil, err
    end
    parts[#parts + 1] = data
    n = n - #data
  end
  return true
end

local function read_headers(r)
  local line, err = read_line(r)
  if not line then
    return nil, err
  end
  local version, status = match(line, "^HTTP/(%d%.%d) (%d%d%d)")
  if not status then
    return nil, "not an HTTP response: " .. sub(line, 1, 60)
  end
  local headers = {}
  local total = #line
  while true do
    line, err = read_line(r)
    if not line then
      return nil, err
    end
    if line == "" then
      break
    end
    total = total + #line
    if total > MAX_HEADER_BYTES then
      return nil, "response headers too large"
    end
    local name, value = match(line, "^([^:]+):%s*(.-)%s*$")
    if name then
      headers[lower(name)] = value
    end
  end
  return tonumber(status), headers, version
end

local function read_body(r, headers, cap)
  local parts = {}
  local te = headers["transfer-encoding"]
  if te and find(lower(te), "chunked", 1, true) then
    local size = 0
    while true do
      local line, err = read_line(r)
      if not line then
        return nil, "reading chunk size: " .. err
      end
      local n = tonumber(match(line, "^%s*(%x+)"), 16)
      if not n then
        return nil, "bad chunk size line"
      end
      if n == 0 then
        -- trailers, then the final empty line
        repeat
          line, err = read_line(r)
          if not line then
            return nil, "reading trailers: " .. err
          end
        until line == ""
        break
      end
      size = size + n
      if size > cap then
        return nil, "body larger than " .. cap .. " bytes"
      end
      local ok
      ok, err = read_exact(r, n, parts)
      if not ok then
        return nil, "reading chunk: " .. err
      end
      line, err = read_line(r)
      if line ~= "" then
        return nil, "bad chunk terminator" .. (err and (": " .. err) or "")
      end
    end
    return concat(parts), nil, true
  end

  local len = headers["content-length"]
  if len then
    local n = tonumber(len)
    if not n or n < 0 or n ~= floor(n) then
      return nil, "bad Content-Length " .. sub(len, 1, 20)
    end
    if n > cap then
      return nil, "body of " .. n .. " bytes is larger than the " .. cap .. " byte limit"
    end
    local ok, err = read_exact(r, n, parts)
    if not ok then
      return nil, "reading body: " .. err
    end
    return concat(parts), nil, true
  end

  -- No length: the body ends when the server closes.
  local size = #r.buf - r.pos + 1
  parts[1] = sub(r.buf, r.pos)
  r.pos = #r.buf + 1
  while true do
    local data, err = fill(r)
    if not data then
      if err == "closed" then
        break
      end
      return nil, "reading body: " .. err
    end
    size = size + #data
    if size > cap then
      return nil, "body larger than " .. cap .. " bytes"
    end
    parts[#parts + 1] = data
  end
  return concat(parts), nil, false
end

local function build_request(self, path)
  local token = self.token_env and os_getenv(self.token_env)
  local lines = {
    "GET ", path, " HTTP/1.1\r\n",
    "Host: ", self.host_header, "\r\n",
    "User-Agent: ", self.user_agent, "\r\n",
    "Accept: application/json\r\n",
  }
  if token and token ~= "" then
    if find(token, "[%c]") then
      return nil, "the token in $" .. self.token_env .. " contains control characters"
    end
    lines[#lines + 1] = "X-Consul-Token: "
    lines[#lines + 1] = token
    lines[#lines + 1] = "\r\n"
  end
  lines[#lines + 1] = "\r\n"
  return concat(lines)
end

local function attempt(self, req, extra_wait)
  local reused = self.sock ~= nil
  local sock = self.sock
  self.sock = nil
  if not sock then
    local err
    sock, err = connect(self)
    if not sock then
      return nil, err, false
    end
  else
    sock:settimeouts(self.timeout_ms, self.timeout_ms, self.timeout_ms)
  end

  local _, err = sock:send(req)
  if err then
    sock:close()
    return nil, "send failed: " .. err, reused
  end

  local r = {
    sock = sock,
    buf = "",
    pos = 1,
    connect_ms = self.timeout_ms,
    -- The answer to a blocking query may take the whole wait (plus Consul's
    -- jitter of up to wait/16); then the usual timeout on top.
    deadline = now() + extra_wait + self.timeout_ms / 1000,
    got_any = false,
  }
  local status, headers, version = read_headers(r)
  if not status then
    sock:close()
    local e = headers
    if e == "timeout" then
      e = "timed out waiting for the response"
    elseif e == "closed" then
      e = "connection closed before a response"
    end
    -- A kept-alive connection the server closed meanwhile: retry on a new one.
    return nil, e, reused and not r.got_any
  end
  -- Once headers are in, the body must follow promptly.
  r.deadline = now() + max(self.timeout_ms / 1000, 1)
  local body, berr, complete = read_body(r, headers, self.max_body)
  if not body then
    sock:close()
    if find(berr, "timeout", 1, true) then
      berr = "timed out reading the body (" .. berr .. ")"
    end
    return nil, berr, false
  end
  local conn = headers["connection"] and lower(headers["connection"]) or ""
  if complete and version == "1.1" and not find(conn, "close", 1, true) and r.pos > #r.buf then
    self.sock = sock
  else
    sock:close()
  end
  return { status = status, headers = headers, body = body }
end

--- GET path (with its query string). `wait` is how long the server may hold
--- the answer (a blocking query's wait), 0 otherwise.
--- Returns {status, headers (lower-case names), body}, or nil, err.
function _M.get(self, path, wait)
  local req, err = build_request(self, path)
  if not req then
    return nil, err
  end
  local extra = wait and wait > 0 and (wait + wait / 16) or 0
  local res, retry
  res, err, retry = attempt(self, req, extra)
  if not res and retry then
    res, err = attempt(self, req, extra)
  end
  if not res then
    return nil, err
  end
  return res
end

return _M
