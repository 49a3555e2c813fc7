-- gen_lb.singleton: work that one worker per node does, in long-running
-- loops (the Consul watcher's per-upstream loops, the health checker).
--
-- Owns the leader tick (a gen_lb.lease renewed by every worker's timer), the
-- `leading` flag, and each loop's generation, heartbeat and restart; touches
-- nothing but its lease. A loop runs in its own timer until its abort()
-- says stop: a newer generation was started, this worker stopped leading, or
-- it is exiting. The tick restarts a loop that ended or whose heartbeat went
-- stale, so no error ends the work for good. runtime.init_worker starts the
-- tick timers; this module starts only the loops' own timers.
local log = require "gen_lb.log"

local ngx = ngx
local now = ngx.now
local update_time = ngx.update_time
local exiting = ngx.worker.exiting
local timer_at = ngx.timer.at
local fmt = string.format
local ipairs = ipairs
local pcall = pcall
local setmetatable = setmetatable

local _M = { _VERSION = "0.1.0" }
local mt = { __index = _M }

local function nop() end

--- opts: lease (gen_lb.lease), what (names it in log lines), and hooks
--- on_lead() (this worker just took the lease), on_step_down() (it lost
--- it), on_tick() (every tick while it holds it, before loops are checked).
function _M.new(opts)
  local s = setmetatable({
    lease = opts.lease,
    what = opts.what,
    on_lead = opts.on_lead or nop,
    on_step_down = opts.on_step_down or nop,
    on_tick = opts.on_tick or nop,
    leading = false,
    loops = {},
  }, mt)
  -- The timer callback, made once: runtime.init_worker runs it every lease.TICK.
  s.tick = function(premature)
    local ok, err = pcall(s.step, s, premature)
    if not ok then
      log.err(s.what, " tick failed: ", err)
    end
  end
  return s
end

--- Whether this worker runs the loops now.
function _M.is_leading(self)
  return self.leading
end

--- A loop of this singleton: opts.name (for log lines), opts.stale_after
--- (seconds without a heartbeat after which it is replaced) and
--- opts.run(loop, abort), which runs until abort() returns true, calling
--- beat(loop) at least every stale_after seconds. Started by the next tick.
function _M.loop(self, opts)
  local lp = { name = opts.name, stale_after = opts.stale_after, run = opts.run, gen = 0, running = false, beat = 0 }
  self.loops[#self.loops + 1] = lp
  return lp
end

--- The loop is alive.
function _M.beat(lp)
  update_time()
  lp.beat = now()
end

local function run(premature, s, lp, gen)
  if premature or gen ~= lp.gen then
    return
  end
  lp.running = true
  local function abort()
    return lp.gen ~= gen or not s.leading or exiting()
  end
  local ok, err = pcall(lp.run, lp, abort)
  if not ok then
    log.err(lp.name, " failed: ", err)
  end
  if lp.gen == gen then
    lp.running = false
  end
end

local function start(s, lp)
  lp.gen = lp.gen + 1
  lp.running = true
  update_time()
  lp.beat = now()
  local ok, err = timer_at(0, run, s, lp, lp.gen)
  if not ok then
    lp.running = false
    log.err("cannot start ", lp.name, ": ", err)
  end
end

--- One tick (the body of the timer callback `self.tick`).
function _M.step(self, premature)
  if premature then
    -- The worker is exiting (reload, stop): hand the lease on at once.
    self.lease:release()
    self.leading = false
    return
  end
  local leader = self.lease:tick()
  if leader and not self.leading then
    self.leading = true
    self.on_lead()
  elseif not leader and self.leading then
    self.leading = false
    -- Each loop notices the new generation and closes its own connections.
    for _, lp in ipairs(self.loops) do
      lp.gen = lp.gen + 1
      lp.running = false
    end
    self.on_step_down()
  end
  if not leader then
    return
  end
  self.on_tick()
  update_time()
  local t = now()
  for _, lp in ipairs(self.loops) do
    if not lp.running or t - lp.beat > lp.stale_after then
      if lp.running then
        log.err(lp.name, " has been silent for ", fmt("%.0f", t - lp.beat), " s; restarting it")
      end
      start(self, lp)
    end
  end
end

--- pid of the worker that holds the lease (nil when none).
function _M.holder(self)
  return self.lease:holder()
end


return _M
