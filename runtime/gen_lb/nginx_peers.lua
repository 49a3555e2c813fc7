-- gen_lb.nginx_peers: nginx's own view of the peers of an upstream {} that
-- gen-lb does not balance (static upstreams, `discovery: dns` ones), read
-- through lua-upstream-nginx-module (`ngx.upstream`, bundled with
-- OpenResty; Debian's nginx lacks it). For the status endpoint only: nothing
-- here runs per proxied request.
--
-- Owns nothing but the module handle, loaded once; reads nginx's peer
-- structures (per worker, or shared when the upstream has a zone).
local config = require "gen_lb.config"

local ngx = ngx
local ipairs = ipairs
local pcall = pcall
local require = require

local _M = { _VERSION = "0.1.0" }

-- Decided once at load: the module is there or it is not.
local upstream_api
if config.upstream_module then
  local ok, mod = pcall(require, "ngx.upstream")
  if ok then
    upstream_api = mod
  end
end

--- Whether this target can tell nginx's peer state at all.
function _M.available()
  return upstream_api ~= nil
end

-- nginx's round robin skips a peer while max_fails tries failed within
-- fail_timeout of the last failure (ngx_http_upstream_get_peer).
local function healthy_now(p, now)
  if p.down then
    return false
  end
  local max_fails = p.max_fails or 0
  return not (max_fails > 0 and (p.fails or 0) >= max_fails and now - (p.checked or 0) <= (p.fail_timeout or 0))
end

local function add(name, out, backup, now)
  local get = backup and upstream_api.get_backup_peers or upstream_api.get_primary_peers
  local list, err = get(name)
  if not list then
    return nil, err
  end
  for _, p in ipairs(list) do
    out[#out + 1] = {
      address = p.name,
      backup = backup,
      weight = p.weight,
      down = p.down == true,
      healthy = healthy_now(p, now),
      fails = p.fails or 0,
      max_fails = p.max_fails,
      fail_timeout = p.fail_timeout,
      conns = p.conns,
    }
  end
  return out
end

--- The upstream's peers, primary then backup, as nginx holds them now:
--- {address, backup, weight, down, healthy, fails, max_fails, fail_timeout,
--- conns}, or nil and the error (or nil, "unavailable" without the module).
function _M.list(name)
  if not upstream_api then
    return nil, "lua-upstream-nginx-module (ngx.upstream) is not available on this target"
  end
  local now = ngx.time()
  local out, err = add(name, {}, false, now)
  if out then
    out, err = add(name, out, true, now)
  end
  return out, err
end

return _M
