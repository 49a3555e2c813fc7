-- The hand-built pattern gen-lb replaces, made to work, as the benchmark's
-- floor: every request decodes the peer list (JSON) from a shared dict and
-- picks a random peer.
local cjson = require "cjson.safe"
local balancer = require "ngx.balancer"

local _M = {}

local dict = ngx.shared.gen_lb_peers

function _M.balance(name)
  local list = cjson.decode(dict:get("naive:" .. name) or "[]")
  if not list or #list == 0 then
    return ngx.exit(ngx.ERROR)
  end
  local p = list[math.random(#list)]
  local ok, err = balancer.set_current_peer(p.host, p.port)
  if not ok then
    ngx.log(ngx.ERR, "naive: ", err)
    return ngx.exit(ngx.ERROR)
  end
end

--- content_by_lua: copy gen-lb's current list of ?name= into the naive key.
function _M.seed()
  local name = ngx.var.arg_name
  local list = require("gen_lb.peers").get(name)
  local out = {}
  for i, p in ipairs(list) do
    out[i] = { host = p.host, port = p.port }
  end
  dict:set("naive:" .. name, cjson.encode(out))
  ngx.say(#out)
end

return _M
