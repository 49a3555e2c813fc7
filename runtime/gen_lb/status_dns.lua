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
local nginx_peers = require "gen_lb.nginx_peers"

local ipairs = ipairs

local _M = { _VERSION = "0.1.0" }

local names = config.dns_upstream_names
local ups = config.dns_upstreams

function _M.names()
  return names
end

function _M.has(name)
  return ups[name] ~= nil
end

--- name -> status table and peers list (nginx's current view), or nil for an unknown name.
function _M.upstream(name)
  local up = ups[name]
  if not up then
    return nil
  end
  local ps, err = nginx_peers.list(name)
  ps = ps or {}
  local healthy = 0
  for _, p in ipairs(ps) do
    p.state = p.down and "down" or (p.healthy and "healthy" or "failed")
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
