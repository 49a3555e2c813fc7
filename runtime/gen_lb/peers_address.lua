-- gen_lb.peers_address: what a peer address is, and its one text. Pure
-- functions of their arguments: IPv4 and IPv6 literals normalised (so that
-- one backend is one peer: 127.000.000.001 is 127.0.0.1, 0:0::1 is ::1),
-- host names told apart from garbage, and the forms nginx takes (ip:port,
-- [v6]:port; IPv6 in brackets for set_current_peer and cosocket connect).
--
-- Owns nothing and touches nothing: no shared dict, no I/O. gen_lb.peers
-- re-exports what its callers use (classify, valid_ip, peer_id, connect_host).
local find = string.find
local sub = string.sub
local match = string.match
local gmatch = string.gmatch
local fmt = string.format
local floor = math.floor
local concat = table.concat
local ipairs = ipairs
local tonumber = tonumber
local type = type

local _M = { _VERSION = "0.1.0" }

local function peer_id(host, port)
  if find(host, ":", 1, true) then
    return "[" .. host .. "]:" .. port
  end
  return host .. ":" .. port
end
_M.peer_id = peer_id

-- The four octets of a dotted IPv4 address (each at most three decimal
-- digits, leading zeros being decimal as Consul and inet_pton read them), or nil.
local function ipv4_octets(s)
  local a, b, c, d = match(s, "^(%d%d?%d?)%.(%d%d?%d?)%.(%d%d?%d?)%.(%d%d?%d?)$")
  if not a then
    return nil
  end
  a, b, c, d = tonumber(a), tonumber(b), tonumber(c), tonumber(d)
  if a > 255 or b > 255 or c > 255 or d > 255 then
    return nil
  end
  return a, b, c, d
end

-- The 16-bit groups of one side of an IPv6 address ("" has none) appended to
-- out; the last field may be a dotted IPv4 tail when v4_ok. false when malformed.
local function v6_groups(part, v4_ok, out)
  if part == "" then
    return true
  end
  local fields = {}
  for f in gmatch(part .. ":", "([^:]*):") do
    fields[#fields + 1] = f
  end
  for k, f in ipairs(fields) do
    if v4_ok and k == #fields and find(f, ".", 1, true) then
      local a, b, c, d = ipv4_octets(f)
      if not a then
        return false
      end
      out[#out + 1] = a * 256 + b
      out[#out + 1] = c * 256 + d
    elseif match(f, "^%x%x?%x?%x?$") then
      out[#out + 1] = tonumber(f, 16)
    else
      return false
    end
  end
  return true
end

-- The RFC 5952 text of eight groups: lower-case hex without leading zeros,
-- the longest run of two or more zero groups (the first of equals) as "::",
-- and an IPv4-mapped address with its dotted tail.
local function v6_text(g)
  if g[1] == 0 and g[2] == 0 and g[3] == 0 and g[4] == 0 and g[5] == 0 and g[6] == 0xffff then
    return fmt("::ffff:%d.%d.%d.%d", floor(g[7] / 256), g[7] % 256, floor(g[8] / 256), g[8] % 256)
  end
  local best, best_len, at, len = 0, 0, 0, 0
  for k = 1, 8 do
    if g[k] == 0 then
      if len == 0 then
        at = k
      end
      len = len + 1
      if len > best_len then
        best, best_len = at, len
      end
    else
      len = 0
    end
  end
  local parts = {}
  if best_len < 2 then
    for k = 1, 8 do
      parts[k] = fmt("%x", g[k])
    end
    return concat(parts, ":")
  end
  for k = 1, best - 1 do
    parts[#parts + 1] = fmt("%x", g[k])
  end
  local head = concat(parts, ":")
  parts = {}
  for k = best + best_len, 8 do
    parts[#parts + 1] = fmt("%x", g[k])
  end
  return head .. "::" .. concat(parts, ":")
end

local function canonical_ipv6(s)
  if #s > 45 or not match(s, "^[%x:.]+$") then
    return nil
  end
  local g = {}
  local gap = find(s, "::", 1, true)
  if not gap then
    if not v6_groups(s, true, g) or #g ~= 8 then
      return nil
    end
    return v6_text(g)
  end
  local tail = {}
  local after = sub(s, gap + 2)
  if find(after, "::", 1, true) or not v6_groups(sub(s, 1, gap - 1), false, g)
    or not v6_groups(after, true, tail) or #g + #tail > 7 then
    return nil
  end
  for _ = 1, 8 - #g - #tail do
    g[#g + 1] = 0
  end
  for _, v in ipairs(tail) do
    g[#g + 1] = v
  end
  return v6_text(g)
end

--- What a peer address is: "ipv4" or "ipv6" and its canonical text (so that
--- one backend is one peer: 127.000.000.001 is 127.0.0.1, 0:0::1 is ::1), or
--- "name" and the host name as given, or nil and why it is neither (an
--- address carrying a port, a zone index, brackets, garbage).
local function classify(s)
  if type(s) ~= "string" or s == "" then
    return nil, "not a string"
  end
  local a, b, c, d = ipv4_octets(s)
  if a then
    return "ipv4", a .. "." .. b .. "." .. c .. "." .. d
  end
  if find(s, ":", 1, true) then
    local v6 = canonical_ipv6(s)
    if v6 then
      -- An IPv4-mapped address (::ffff:a.b.c.d) reaches the IPv4 peer: one backend, one peer.
      local mapped = match(v6, "^::ffff:(%d+%.%d+%.%d+%.%d+)$")
      if mapped then
        return "ipv4", mapped
      end
      return "ipv6", v6
    end
    if match(s, "^[^:]+:%d+$") or match(s, "^%[.*%]:%d+$") then
      return nil, "carries a port (the port is Service.Port)"
    end
    return nil, "is not an IP address"
  end
  if #s <= 253 and match(s, "^[%w][%w%-%.]*$") and not find(s, "..", 1, true) and match(s, "%a") then
    return "name", s
  end
  return nil, "is not an IP address"
end
_M.classify = classify

--- Whether a peer address is an IP literal (balancer.set_current_peer takes
--- nothing else, IPv6 in brackets).
function _M.valid_ip(s)
  local kind = classify(s)
  return kind == "ipv4" or kind == "ipv6"
end

--- The host as set_current_peer and cosocket connect take it: IPv6 in brackets.
local function connect_host(host)
  if find(host, ":", 1, true) then
    return "[" .. host .. "]"
  end
  return host
end
_M.connect_host = connect_host

return _M
