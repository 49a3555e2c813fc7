-- gen_lb.balancer: balancer_by_lua / log_by_lua entry points.
-- Placeholder until discovery lands: round robin over the fallback peers.
local balancer = require "ngx.balancer"
local config = require "gen_lb.config"

local _M = { _VERSION = "0.1.0" }
local cursor = {}

function _M.balance(name)
  local peers = config.upstreams[name].fallback
  if #peers == 0 then
    ngx.log(ngx.ERR, "gen-lb: upstream ", name, " has no peers")
    return ngx.exit(502)
  end
  local i = (cursor[name] or 0) % #peers + 1
  cursor[name] = i
  local ok, err = balancer.set_current_peer(peers[i].host, peers[i].port)
  if not ok then
    ngx.log(ngx.ERR, "gen-lb: set_current_peer failed: ", err)
    return ngx.exit(502)
  end
end

function _M.log(_)
end

return _M
