-- content_by_lua for the memory benchmark: how many upstreams have their
-- peers, and (?touch=1) build every upstream's balancer state in this worker
-- first; then this worker's Lua heap and the shared dicts' use.
local cjson = require "cjson.safe"
local config = require "gen_lb.config"
local peers = require "gen_lb.peers"
local balancer = require "gen_lb.balancer"

local want = tonumber(ngx.var.arg_peers) or 0
local ready = 0
for _, name in ipairs(config.upstream_names) do
  if #peers.get(name) == want then
    ready = ready + 1
  end
  if ngx.var.arg_touch then
    balancer.view(name)
  end
end
collectgarbage("collect")
collectgarbage("collect")
local dicts = {}
for role, name in pairs(config.dicts) do
  local d = ngx.shared[name]
  dicts[role] = { capacity = d:capacity(), free = d:free_space() }
end
ngx.header["Content-Type"] = "application/json"
ngx.say(cjson.encode({
  pid = ngx.worker.pid(),
  upstreams = #config.upstream_names,
  ready = ready,
  lua_bytes = collectgarbage("count") * 1024,
  dicts = dicts,
}))
