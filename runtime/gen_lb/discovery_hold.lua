-- gen_lb.discovery_hold: access_by_lua for a Consul upstream that has no
-- fallback peers. On a fresh start with no dump file, such an upstream has no
-- peers until the watcher's first Consul answer; without this, every request
-- in that window gets an immediate 502. Here a request waits (ngx.sleep, which
-- yields: the worker keeps serving) until the upstream has had any answer or
-- list, at most runtime.hold_for_peers seconds, then goes on to the balancer.
--
-- Once this worker has seen the upstream populated, a request costs one table
-- lookup: an upstream never goes back to "never populated" in a worker's life.
-- Owns the per-worker `ready` flags; reads the peers dict's meta.
local config = require "gen_lb.config"
local peers = require "gen_lb.peers"

local ngx = ngx
local sleep = ngx.sleep
local now = ngx.now
local update_time = ngx.update_time

local _M = { _VERSION = "0.1.0" }

local HOLD = config.hold_for_peers
-- How often a held request looks again: short next to a Consul round trip,
-- long enough that a burst of held requests costs little.
local STEP = 0.025

local ready = {}

-- Whether the upstream has ever had a list or a Consul answer (source "none":
-- seeded with nothing, and the watcher has not published yet).
local function populated(name)
  if peers.meta(name).source ~= "none" then
    ready[name] = true
    return true
  end
  return false
end

--- access_by_lua: hold the request while upstream `name` was never populated,
--- at most HOLD seconds; then the balancer answers (502 if there are still no peers).
function _M.wait(name)
  if ready[name] or HOLD <= 0 or populated(name) then
    return
  end
  update_time()
  local deadline = now() + HOLD
  while true do
    local left = deadline - now()
    if left <= 0 then
      return
    end
    sleep(left < STEP and left or STEP)
    if populated(name) then
      return
    end
    update_time()
  end
end

return _M
