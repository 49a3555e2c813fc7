-- gen_lb.status_static: the status endpoint's part for static upstreams
-- (`servers:` in the spec, nginx's own upstream {} with no gen-lb Lua on
-- the request path). Required by gen_lb.status; nothing here runs per
-- proxied request.
--
-- JSON, under the top-level "static_upstreams": {NAME: {balance, retries,
-- resolve, state_source, total, healthy, servers [configured: {address,
-- weight, max_fails, fail_timeout, max_conns, backup, down}], peers}}.
-- peers is nginx's own view where the target ships lua-upstream-nginx-module
-- (`ngx.upstream`, bundled with OpenResty): one entry per resolved address
-- {address, server, backup, weight, down, healthy, fails, max_fails,
-- fail_timeout, conns}. Without the module (Debian's nginx) peers is the
-- configured list with healthy = null: the state lives only in nginx's C
-- structures. nginx keeps that state per worker unless the upstream has a
-- zone (resolve: true adds one): state_source says "worker" or "zone".
--
-- Prometheus: gen_lb_static_upstream_servers{upstream} and, with state,
-- gen_lb_static_peer_up{upstream,peer} and gen_lb_static_peer_fails{upstream,peer}.
local config = require "gen_lb.config"
local nginx_peers = require "gen_lb.nginx_peers"
local cjson = require "cjson.safe"

local encode = cjson.encode
local concat = table.concat
local ipairs = ipairs

local _M = { _VERSION = "0.1.0" }

local names = config.static_upstream_names
local ups = config.static_upstreams

function _M.names()
  return names
end

function _M.has(name)
  return ups[name] ~= nil
end

local function configured_peers(up)
  local out = {}
  for i, s in ipairs(up.servers) do
    out[i] = {
      address = s.address,
      backup = s.backup,
      weight = s.weight,
      down = s.down,
      healthy = cjson.null,
      max_fails = s.max_fails,
      fail_timeout = s.fail_timeout,
    }
  end
  return out
end

--- name -> status table, peers list, or nil for an unknown name.
function _M.upstream(name)
  local up = ups[name]
  if not up then
    return nil
  end
  local ps, err
  local source = "none"
  if nginx_peers.available() then
    ps, err = nginx_peers.list(name)
    source = up.resolve and "zone" or "worker"
  end
  if not ps then
    ps = configured_peers(up)
    source = "none"
  end
  local healthy = 0
  for _, p in ipairs(ps) do
    if p.healthy == true then
      healthy = healthy + 1
    end
  end
  return {
    balance = up.balance,
    retries = up.retries,
    resolve = up.resolve,
    state_source = source,
    state_error = err,
    total = #ps,
    healthy = source ~= "none" and healthy or cjson.null,
    servers = up.servers,
  }, ps
end

--- The `"static_upstreams":{...}` member for these names (JSON text).
function _M.json(list)
  local parts = {}
  for _, name in ipairs(list) do
    local u, ps = _M.upstream(name)
    if u then
      local peers = {}
      for i, p in ipairs(ps) do
        peers[i] = encode(p)
      end
      -- cjson encodes an empty table as {}: the peers array is assembled by hand.
      local head = encode(u)
      parts[#parts + 1] = encode(name) .. ":" .. head:sub(1, -2) .. ',"peers":[' .. concat(peers, ",") .. "]}"
    end
  end
  return '"static_upstreams":{' .. concat(parts, ",") .. "}"
end

--- Prometheus families for these names, through the caller's add/label/number.
function _M.prometheus(list, add, label, number)
  if #list == 0 then
    return
  end
  local data = {}
  for _, name in ipairs(list) do
    local u, ps = _M.upstream(name)
    if u then
      data[#data + 1] = { name = label(name), u = u, ps = ps }
    end
  end
  add("# HELP gen_lb_static_upstream_servers Peers of a static upstream (nginx's upstream {}).\n"
    .. "# TYPE gen_lb_static_upstream_servers gauge\n")
  for _, d in ipairs(data) do
    add('gen_lb_static_upstream_servers{upstream="' .. d.name .. '"} ' .. number(d.u.total) .. "\n")
  end
  if not nginx_peers.available() then
    return
  end
  add("# HELP gen_lb_static_peer_up 1 when nginx would pick the static peer, 0 when it is down or failed.\n"
    .. "# TYPE gen_lb_static_peer_up gauge\n")
  for _, d in ipairs(data) do
    for _, p in ipairs(d.ps) do
      add('gen_lb_static_peer_up{upstream="' .. d.name .. '",peer="' .. label(p.address) .. '"} '
        .. number(p.healthy == true) .. "\n")
    end
  end
  add("# HELP gen_lb_static_peer_fails Failed tries counted by nginx within fail_timeout.\n"
    .. "# TYPE gen_lb_static_peer_fails gauge\n")
  for _, d in ipairs(data) do
    for _, p in ipairs(d.ps) do
      add('gen_lb_static_peer_fails{upstream="' .. d.name .. '",peer="' .. label(p.address) .. '"} '
        .. number(p.fails) .. "\n")
    end
  end
end

return _M
