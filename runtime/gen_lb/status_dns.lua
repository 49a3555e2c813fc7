-- gen_lb.status_dns: the status endpoint's part for `discovery: dns`
-- upstreams (nginx's own zoned upstream {} whose server is re-resolved from
-- Consul's DNS SRV records). Required by gen_lb.status; nothing here runs
-- per proxied request.
--
-- Listed under "upstreams" beside the Lua engine's, with source = "dns":
-- {service, balance, retries, source, dns_name, resolver, valid,
-- health_checks, state_error, total, healthy, all_down, peers [{address,
-- weight, healthy, state, backup, down, fails, max_fails, fail_timeout,
-- conns}]}. The peers are what nginx resolved last, read from the upstream's
-- zone through lua-upstream-nginx-module (`ngx.upstream`, bundled with
-- OpenResty): the zone is shared memory, so every worker sees the same
-- peers and failure counts. The DNS engine needs nginx 1.27.3+, which only
-- OpenResty among gen-lb's targets has, so the module is always there.
local config = require "gen_lb.config"

local ngx = ngx
local ipairs = ipairs
local pcall = pcall
local require = require

local _M = { _VERSION = "0.1.0" }

local names = config.dns_upstream_names
local ups = config.dns_upstreams

-- Decided once at load: the module is there or it is not.
local upstream_api
if config.upstream_module then
  local ok, mod = pcall(require, "ngx.upstream")
  if ok then
    upstream_api = mod
  end
end

function _M.names()
  return names
end

function _M.has(name)
  return ups[name] ~= nil
end

-- nginx's round robin skips a peer while max_fails tries failed within
-- fail_timeout of the last failure (ngx_http_upstream_get_peer).
local function peer_healthy(p, now)
  if p.down then
    return false
  end
  local max_fails = p.max_fails or 0
  return not (max_fails > 0 and (p.fails or 0) >= max_fails and now - (p.checked or 0) <= (p.fail_timeout or 0))
end

local function add_peers(name, out, backup, now)
  local get = backup and upstream_api.get_backup_peers or upstream_api.get_primary_peers
  local list, err = get(name)
  if not list then
    return nil, err
  end
  for _, p in ipairs(list) do
    local healthy = peer_healthy(p, now)
    out[#out + 1] = {
      address = p.name,
      weight = p.weight,
      healthy = healthy,
      state = p.down and "down" or (healthy and "healthy" or "failed"),
      backup = backup,
      down = p.down == true,
      fails = p.fails or 0,
      max_fails = p.max_fails,
      fail_timeout = p.fail_timeout,
      conns = p.conns,
    }
  end
  return out
end

--- name -> status table and peers list (nginx's current view), or nil for an unknown name.
function _M.upstream(name)
  local up = ups[name]
  if not up then
    return nil
  end
  local ps, err = {}, "lua-upstream-nginx-module (ngx.upstream) is not available on this target"
  if upstream_api then
    local now = ngx.time()
    ps, err = add_peers(name, {}, false, now)
    if ps then
      ps, err = add_peers(name, ps, true, now)
    end
    ps = ps or {}
  end
  local healthy = 0
  for _, p in ipairs(ps) do
    if p.healthy then
      healthy = healthy + 1
    end
  end
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

return _M
