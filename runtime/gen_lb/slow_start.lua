-- gen_lb.slow_start: the weights of an upstream's peers while some ramp up
-- after they joined or returned to health (spec `slow_start`), as NGINX
-- Plus's slow_start does: a peer's weight grows linearly from near 0 to its
-- own over slow_start seconds from the time in its "at" health key.
--
-- Called by the balancer whenever it recomputes an upstream's eligible set
-- (its health version moved); while any peer ramps, the health checker
-- moves that version every few tenths of a second (gen_lb.health_checker),
-- so the weights follow the clock without any per-request work. Pickers
-- with a set_weights method (round robin, random) honour it; least_conn and
-- chash have no weights to ramp.
--
-- Owns nothing; reads the health dict.
local config = require "gen_lb.config"
local health = require "gen_lb.health"

local ngx = ngx
local now = ngx.now
local floor = math.floor

local _M = { _VERSION = "0.1.0" }

local hdict = ngx.shared[config.dicts.health]
local key = health.key

-- Weights are scaled by this during a ramp, so that round robin (integer
-- weights) sees the ramp in steps of 1 %.
local SCALE = 100

--- Give `picker` the ramped weights of `list` (1..n, mask[i]: eligible), or
--- its own weights again once no peer ramps. Returns whether one ramps.
function _M.apply(picker, name, list, n, mask, slow_start)
  if not picker.set_weights then
    return false
  end
  local t = now()
  local w, ramping = {}, false
  for i = 1, n do
    local p = list[i]
    local f = 1
    if mask[i] and (hdict:get(key("st", name, p.id)) or 0) == 0 then
      local at = hdict:get(key("at", name, p.id))
      if at and t - at < slow_start then
        f = (t - at) / slow_start
        ramping = true
      end
    end
    local x = floor(p.weight * SCALE * f)
    w[i] = x >= 1 and x or 1
  end
  picker:set_weights(ramping and w or nil)
  return ramping
end

return _M
