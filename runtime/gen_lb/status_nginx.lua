-- gen_lb.status_nginx: the status endpoint's part for the upstreams nginx
-- balances itself, keyed by kind: "static" (`servers:` in the spec, nginx's
-- own upstream {} with no gen-lb Lua on the request path) and "dns"
-- (`discovery: dns`, a zoned upstream {} whose server nginx re-resolves from
-- Consul's DNS SRV records). Required by gen_lb.status; nothing here runs
-- per proxied request. Reads the runtime config and nginx's peers (through
-- gen_lb.nginx_peers); writes nothing.
--
-- dns: listed under "upstreams" beside the Lua engine's, with source =
-- "dns": {service, balance, retries, source, dns_name, resolver, valid,
-- health_checks, state_error, total, healthy, all_down, peers [{address,
-- weight, healthy, state, backup, down, fails, max_fails, fail_timeout,
-- conns}]}. The peers are what nginx resolved last, read from the zone
-- (shared memory: every worker sees the same peers and failure counts). The
-- DNS engine needs nginx 1.27.3+, which only OpenResty among gen-lb's
-- targets has, so lua-upstream-nginx-module is always there.
--
-- static: JSON under the top-level "static_upstreams": {NAME: {balance,
-- retries, resolve, state_source, total, healthy, servers [configured:
-- {address, weight, max_fails, fail_timeout, max_conns, backup, down}],
-- peers}}. peers is nginx's own view where the target ships
-- lua-upstream-nginx-module (`ngx.upstream`, bundled with OpenResty): one
-- entry per resolved address {address, server, backup, weight, down,
-- healthy, fails, max_fails, fail_timeout, conns}. Without the module
-- (Debian's nginx) peers is the configured list with healthy = null: the
-- state lives only in nginx's C structures. nginx keeps that state per
-- worker unless the upstream has a zone (resolve: true adds one):
-- state_source says "worker" or "zone".
--
-- Prometheus (static): gen_lb_static_upstream_servers{upstream} and, with
-- state, gen_lb_static_peer_up{upstream,peer} and
-- gen_lb_static_peer_fails{upstream,peer}. DNS upstreams share the Lua
-- engine's families (gen_lb.status renders them).
local config = require "gen_lb.config"
local nginx_peers = require "gen_lb.nginx_peers"
local cjson = require "cjson.safe"

local encode = cjson.encode
local concat = table.concat
local ipairs = ipairs

local _M = { _VERSION = "0.1.0" }

-- Peers counted healthy: only a true `healthy` (the configured list's is cjson.null).
local function count_healthy(ps)
  local healthy = 0
  for _, p in ipairs(ps) do
    if p.healthy == true then
      healthy = healthy + 1
    end
  end
  return healthy
end

local function dns_status(name, up)
  local ps, err = nginx_peers.list(name)
  ps = ps or {}
  for _, p in ipairs(ps) do
    p.state = p.down and "down" or (p.healthy and "healthy" or "failed")
  end
  local healthy = count_healthy(ps)
  return {
    service = up.service,
    balance = up.balance,
    retries = up.retries,
    source = "dns",
    dns_name = up.dns_name,
    resolver = up.resolver,
    valid = up.valid,
    health_checks = up.health_checks,
    state_error = err,
    total = #ps,
    healthy = healthy,
    all_down = #ps > 0 and healthy == 0,
  }, ps
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

local function static_status(name, up)
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
  return {
    balance = up.balance,
    retries = up.retries,
    resolve = up.resolve,
    state_source = source,
    state_error = err,
    total = #ps,
    healthy = source ~= "none" and count_healthy(ps) or cjson.null,
    servers = up.servers,
  }, ps
end

-- kind -> the config's names and upstreams, and the status reader.
local KINDS = {
  dns = { names = config.dns_upstream_names, ups = config.dns_upstreams, status = dns_status },
  static = { names = config.static_upstream_names, ups = config.static_upstreams, status = static_status },
}

--- The names of this kind's upstreams, in the spec's order.
function _M.names(kind)
  return KINDS[kind].names
end

--- Whether name is an upstream of this kind.
function _M.has(kind, name)
  return KINDS[kind].ups[name] ~= nil
end

--- kind, name -> status table and peers list (nginx's current view), or nil for an unknown name.
function _M.upstream(kind, name)
  local k = KINDS[kind]
  local up = k.ups[name]
  if not up then
    return nil
  end
  return k.status(name, up)
end

--- The `"static_upstreams":{...}` member for these names (JSON text).
function _M.static_json(list)
  local parts = {}
  for _, name in ipairs(list) do
    local u, ps = _M.upstream("static", name)
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

-- Per-peer families of static upstreams (where nginx's state can be read): name, help, value.
local STATIC_PEER_FAMILIES = {
  { "gen_lb_static_peer_up", "1 when nginx would pick the static peer, 0 when it is down or failed.",
    function(p) return p.healthy == true end },
  { "gen_lb_static_peer_fails", "Failed tries counted by nginx within fail_timeout.",
    function(p) return p.fails end },
}

--- Prometheus families for these static upstreams, through the caller's add/label/number.
function _M.static_prometheus(list, add, label, number)
  if #list == 0 then
    return
  end
  local data = {}
  for _, name in ipairs(list) do
    local u, ps = _M.upstream("static", name)
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
  for _, f in ipairs(STATIC_PEER_FAMILIES) do
    add("# HELP " .. f[1] .. " " .. f[2] .. "\n# TYPE " .. f[1] .. " gauge\n")
    for _, d in ipairs(data) do
      for _, p in ipairs(d.ps) do
        add(f[1] .. '{upstream="' .. d.name .. '",peer="' .. label(p.address) .. '"} ' .. number(f[3](p)) .. "\n")
      end
    end
  end
end

return _M
