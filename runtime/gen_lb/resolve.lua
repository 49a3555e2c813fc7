-- gen_lb.resolve: host names (a Consul instance's Address, a fallback peer)
-- to IP addresses, through the name servers of nginx.http.resolver, with
-- lua-resty-dns where the target ships it (OpenResty's lualib does;
-- Debian's nginx has no lua-resty-dns package, and there names stay
-- unresolved: the caller drops them with a warning saying why).
--
-- Called by the Consul watcher while it parses an answer and by the fallback
-- peers' resolver (gen_lb.discovery_fallback), both timers, where cosockets
-- work; never on the request path. Answers are kept for their TTL (Consul's
-- DNS gives 0: then each Consul answer resolves afresh), which is returned
-- so that a caller can ask again when it runs out.
--
-- Owns this worker's answer cache; touches no shared dict.
local config = require "gen_lb.config"

local ngx = ngx
local now = ngx.now
local min = math.min
local ipairs = ipairs
local pcall = pcall
local tostring = tostring

local _M = { _VERSION = "0.1.0" }

local has_dns, dns = pcall(require, "resty.dns.resolver")

local servers = {}
for i, s in ipairs(config.resolver) do
  servers[i] = { s.host, s.port }
end

-- Why names cannot be resolved here, or nil when they can.
local unavailable
if #servers == 0 then
  unavailable = "nginx.http.resolver is not set"
elseif not has_dns then
  unavailable = "this nginx has no lua-resty-dns (Debian ships none; OpenResty does)"
end
_M.unavailable = unavailable

local TIMEOUT_MS = 1000
local cache = {}   -- name -> {addrs, expires}

-- addresses and the smallest TTL of one query type, or nil, err.
local function query(r, name, qtype, out)
  local answers, err = r:query(name, { qtype = qtype })
  if not answers then
    return nil, err
  end
  if answers.errcode and answers.errcode ~= 3 then
    return nil, "DNS error " .. tostring(answers.errcode) .. " (" .. tostring(answers.errstr) .. ")"
  end
  local ttl = 3600
  for _, a in ipairs(answers) do
    if a.address and (a.type == 1 or a.type == 28) then
      out[#out + 1] = a.address
      ttl = min(ttl, a.ttl or 0)
    end
  end
  return ttl
end

--- The IP addresses of host name `name` (A and AAAA, as the name server
--- wrote them), nil, and the seconds they stay valid (their smallest TTL);
--- or nil, why.
function _M.resolve(name)
  if unavailable then
    return nil, unavailable
  end
  local t = now()
  local c = cache[name]
  if c and c.expires > t then
    return c.addrs, nil, c.expires - t
  end
  local ok, r, err = pcall(dns.new, dns, { nameservers = servers, retrans = 2, timeout = TIMEOUT_MS })
  if not ok or not r then
    return nil, "resolver: " .. tostring(ok and err or r)
  end
  local addrs = {}
  local ttl4, err4 = query(r, name, r.TYPE_A, addrs)
  local ttl6, err6 = query(r, name, r.TYPE_AAAA, addrs)
  if #addrs == 0 then
    if not ttl4 and not ttl6 then
      return nil, "did not resolve: " .. tostring(err4 or err6)
    end
    return nil, "has no A or AAAA record"
  end
  local ttl = min(ttl4 or 3600, ttl6 or 3600)
  cache[name] = { addrs = addrs, expires = t + ttl }
  return addrs, nil, ttl
end

return _M
