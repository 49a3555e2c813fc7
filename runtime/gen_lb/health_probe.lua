-- gen_lb.health_probe: the probe client, one active check of one peer.
--
-- Owns the check's socket (opened, bounded by the check's timeout, always
-- closed) and the request it sends; touches no shared dict: the checker
-- (gen_lb.health_checker) records the result.
local config = require "gen_lb.config"

local ngx = ngx
local now = ngx.now
local update_time = ngx.update_time
local tcp = ngx.socket.tcp
local concat = table.concat
local sort = table.sort
local gsub = string.gsub
local match = string.match
local find = string.find
local lower = string.lower
local sub = string.sub
local floor = math.floor
local ipairs = ipairs
local pairs = pairs
local pcall = pcall
local tonumber = tonumber
local tostring = tostring

local _M = { _VERSION = "0.1.0" }

local function sanitize(s)
  return (gsub(sub(s, 1, 60), "[%c\128-\255]", "?"))
end

--- The request line and headers of an http(s) check of peer `id`.
function _M.request(ac, id)
  local lines = {
    "GET ", ac.path, " HTTP/1.0\r\n",
    -- No host: the peer's address, as a proxy would send it.
    "Host: ", ac.host or id, "\r\n",
    "User-Agent: ", config.generator, " health check\r\n",
    "Accept: */*\r\n",
    "Connection: close\r\n",
  }
  if ac.headers then
    local names = {}
    for h in pairs(ac.headers) do
      names[#names + 1] = h
    end
    sort(names)
    for _, h in ipairs(names) do
      lines[#lines + 1] = h .. ": " .. ac.headers[h] .. "\r\n"
    end
  end
  lines[#lines + 1] = "\r\n"
  return concat(lines)
end

-- Milliseconds left before `deadline`, or nil when none are (settimeout(0)
-- would mean "the default timeout", not "none").
local function left_ms(deadline)
  update_time()
  local ms = floor((deadline - now()) * 1000)
  if ms < 1 then
    return nil
  end
  return ms
end

-- Headers and body of a check's answer are read whole, within these bounds
-- (and the check's timeout): a health page is small, and a peer that streams
-- without end must not hold a check slot.
local MAX_HEADERS = 100
local MAX_BODY = 1024 * 1024

-- receive(what) with the time left before deadline; nil, why on failure.
local function recv(sock, what, deadline)
  local ms = left_ms(deadline)
  if not ms then
    return nil, "timeout"
  end
  sock:settimeout(ms)
  local data, err, partial = sock:receive(what)
  if not data then
    return nil, err, partial
  end
  return data
end

-- The rest of an answer after its status line: headers, then a body of
-- Content-Length bytes, chunked, or up to the close. true, or nil, why
-- ("truncated ..." when the peer closed before the end).
local function read_rest(sock, deadline)
  local length, chunked
  for _ = 1, MAX_HEADERS + 1 do
    local line, err = recv(sock, "*l", deadline)
    if not line then
      return nil, "truncated headers: " .. tostring(err)
    end
    if line == "" then
      break
    end
    local name, value = match(line, "^([^:]+):%s*(.-)%s*$")
    if name then
      name = lower(name)
      if name == "content-length" then
        length = tonumber(value)
        if not length or length < 0 or length % 1 ~= 0 then
          return nil, "bad Content-Length: " .. sanitize(value)
        end
      elseif name == "transfer-encoding" and find(lower(value), "chunked", 1, true) then
        chunked = true
      end
    end
  end
  if chunked then
    local total = 0
    while true do
      local line, err = recv(sock, "*l", deadline)
      if not line then
        return nil, "truncated body: " .. tostring(err) .. " after " .. total .. " byte(s) of chunks"
      end
      local size = tonumber(match(line, "^%s*(%x+)"), 16)
      if not size then
        return nil, "bad chunk size line: " .. sanitize(line)
      end
      if size == 0 then
        -- Trailers, up to the empty line that ends the answer.
        for _ = 1, MAX_HEADERS + 1 do
          local t
          t, err = recv(sock, "*l", deadline)
          if not t then
            return nil, "truncated body: " .. tostring(err) .. " in the trailers"
          end
          if t == "" then
            return true
          end
        end
        return nil, "more than " .. MAX_HEADERS .. " trailer lines"
      end
      total = total + size
      if total > MAX_BODY then
        return nil, "body over " .. MAX_BODY .. " bytes"
      end
      local _, rerr = recv(sock, size + 2, deadline)
      if rerr then
        return nil, "truncated body: " .. tostring(rerr) .. " within a chunk, after " .. (total - size) .. " byte(s)"
      end
    end
  end
  if length then
    if length > MAX_BODY then
      return nil, "body over " .. MAX_BODY .. " bytes (Content-Length " .. length .. ")"
    end
    if length == 0 then
      return true
    end
    local _, err, partial = recv(sock, length, deadline)
    if err then
      return nil, "truncated body: " .. tostring(err) .. " after " .. #(partial or "") .. " of " .. length .. " byte(s)"
    end
    return true
  end
  -- Neither: the body ends where the peer closes (HTTP/1.0, Connection: close).
  local got = 0
  while got <= MAX_BODY do
    local data, err, partial = recv(sock, 16384, deadline)
    if not data then
      if err == "closed" then
        return true
      end
      return nil, "truncated body: " .. tostring(err) .. " after " .. (got + #(partial or "")) .. " byte(s)"
    end
    got = got + #data
  end
  return nil, "body over " .. MAX_BODY .. " bytes"
end

-- One check over an open-to-be socket; returns true or nil, why. May raise:
-- the caller closes the socket whatever happens.
local function probe(sock, ac, valid, p, deadline)
  local ms = left_ms(deadline)
  if not ms then
    return nil, "timeout"
  end
  sock:settimeout(ms)
  local ok, err = sock:connect(p.host, p.port)
  if not ok then
    return nil, "connect: " .. tostring(err)
  end
  if ac.type == "tcp" then
    return true
  end
  if ac.type == "https" then
    ms = left_ms(deadline)
    if not ms then
      return nil, "timeout"
    end
    sock:settimeout(ms)
    local session
    session, err = sock:sslhandshake(nil, ac.host, ac.ssl_verify == true)
    if not session then
      return nil, "TLS handshake: " .. tostring(err)
    end
  end
  ms = left_ms(deadline)
  if not ms then
    return nil, "timeout"
  end
  sock:settimeout(ms)
  local sent
  sent, err = sock:send(p.request)
  if not sent then
    return nil, "send: " .. tostring(err)
  end
  ms = left_ms(deadline)
  if not ms then
    return nil, "timeout"
  end
  sock:settimeout(ms)
  local line, partial
  line, err, partial = sock:receive("*l")
  if not line then
    if partial and partial ~= "" then
      return nil, "bad answer: " .. tostring(err) .. " after " .. #partial .. " byte(s): " .. sanitize(partial)
    end
    return nil, "read: " .. tostring(err)
  end
  local status = tonumber(match(line, "^HTTP/%d%.%d (%d%d%d)"))
  if not status then
    return nil, "not an HTTP status line: " .. sanitize(line)
  end
  if not valid[status] then
    return nil, "HTTP " .. status
  end
  -- A status line is not an answer: a peer that resets mid-body would pass.
  return read_rest(sock, deadline)
end

--- One check of one peer ({host, port, request}) as `ac` (the upstream's
--- healthcheck.active) says, healthy when its status is in `valid` (a set):
--- true, or nil, why. Never raises; the socket is always closed.
function _M.check(ac, valid, p)
  update_time()
  local deadline = now() + ac.timeout
  local sock = tcp()
  local ok, good, why = pcall(probe, sock, ac, valid, p, deadline)
  sock:close()
  if not ok then
    return nil, "check failed: " .. tostring(good)
  end
  return good, why
end

return _M
