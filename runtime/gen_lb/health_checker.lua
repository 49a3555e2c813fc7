-- gen_lb.health_checker: the active checker and the health housekeeping,
-- in one worker per node (gen_lb.singleton under the "gen_lb:health_checker"
-- lease).
--
-- Owns the checker's per-upstream tracking (peers in step with gen_lb.peers,
-- their states, when each check is due) and its scheduler: one timer that
-- starts each check as a light thread when it is due, at most `concurrency`
-- at once per upstream, each run by gen_lb.health_probe. Peers that appear
-- are checked at once; peers that vanish are forgotten, and so are
-- upstreams a reload removed (gen_lb.health.forget_removed_upstreams).
-- Touches the health dict only through gen_lb.health's functions and keys.
local config = require "gen_lb.config"
local peers = require "gen_lb.peers"
local health = require "gen_lb.health"
local probe = require "gen_lb.health_probe"
local log = require "gen_lb.log"
local lease = require "gen_lb.lease"
local singleton = require "gen_lb.singleton"
local semaphore = require "ngx.semaphore"

local ngx = ngx
local now = ngx.now
local update_time = ngx.update_time
local worker_pid = ngx.worker.pid
local spawn = ngx.thread.spawn
local wait = ngx.thread.wait
local concat = table.concat
local fmt = string.format
local max = math.max
local min = math.min
local ipairs = ipairs
local pairs = pairs
local pcall = pcall
local tostring = tostring

local _M = { _VERSION = "0.1.0" }

local hdict = ngx.shared[config.dicts.health]
local key = health.key
local store = health.store
local set_state = health.set_state
local bump = health.bump
local forget_keys = health.forget_keys

-- The scheduler wakes at least this often (new peers are noticed within it).
local STEP = 0.2
-- Checks in flight at once in the whole node, whatever the upstreams ask.
local MAX_THREADS = 256
-- "All peers down" is logged on entering, on leaving, and this often in between.
local ALL_DOWN_LOG_EVERY = 10
-- Forgotten peers' keys are deleted again after this long (a worker's
-- counter flush may have re-created them meanwhile).
local FORGET_AGAIN = 3

-- ------------------------------------------------------------------ the checker (one worker)

local tracked = {}      -- name -> per-upstream checker state, in the checker worker
local wakeup           -- a semaphore, made per worker in init_worker
local threads_busy = 0

local function new_tracked(name, up)
  local hc = up.healthcheck
  local us = {
    name = name,
    active = hc.active,
    passive = hc.passive,
    version = -1,
    hv = -1,
    peers = {},         -- id -> p
    order = {},         -- array of p, discovery order
    busy = 0,
    down = {},          -- id -> st, from the last scan of states
    ndown = 0,
    all_down_since = nil,
    all_down_logged = 0,
    forget_later = {},
    valid = {},
    slow_start = up.slow_start,
    -- While a peer ramps, the health version moves this often (workers recompute weights).
    ramp_step = up.slow_start and max(STEP, up.slow_start / 20) or nil,
    ramp_next = 0,
  }
  if us.active then
    for _, s in ipairs(us.active.valid_statuses) do
      us.valid[s] = true
    end
  end
  return us
end

local function new_peer(us, peer)
  local name, id = us.name, peer.id
  local p = {
    id = id,
    host = peer.addr,   -- IPv6 in brackets, as connect takes it
    port = peer.port,
    due = 0,            -- checked at once
    busy = false,
    gone = false,
    k_st = key("st", name, id),
    k_ok = key("ok", name, id),
    k_ko = key("ko", name, id),
    k_chk = key("chk", name, id),
    k_last = key("last", name, id),
  }
  if us.active and us.active.type ~= "tcp" then
    p.request = probe.request(us.active, id)
  end
  return p
end

-- Bring the tracked peers in step with the discovered list.
local function sync_peers(us, t)
  local list, version = peers.get(us.name)
  if version == us.version then
    return false
  end
  local first = us.version == -1
  us.version = version
  local seen, order, added = {}, {}, 0
  for _, peer in ipairs(list) do
    local p = us.peers[peer.id]
    if not p then
      p = new_peer(us, peer)
      us.peers[peer.id] = p
      added = added + 1
    end
    seen[peer.id] = true
    order[#order + 1] = p
  end
  local removed = {}
  for id, p in pairs(us.peers) do
    if not seen[id] then
      p.gone = true
      us.peers[id] = nil
      removed[#removed + 1] = id
    end
  end
  if first then
    -- A new checker: forget what an earlier one tracked that is gone now.
    local known = hdict:get(key("known", us.name))
    if known then
      for id in known:gmatch("[^\n]+") do
        if not seen[id] then
          removed[#removed + 1] = id
        end
      end
    end
  end
  local was_down = false
  for _, id in ipairs(removed) do
    if forget_keys(us.name, id) then
      was_down = true
    end
    us.forget_later[#us.forget_later + 1] = { id = id, at = t + FORGET_AGAIN }
  end
  if was_down then
    bump(us.name)
  end
  us.order = order
  us.hv = -1 -- rescan the states of the new set
  local ids = {}
  for i, p in ipairs(order) do
    ids[i] = p.id
  end
  store(key("known", us.name), concat(ids, "\n"))
  if added > 0 or #removed > 0 then
    log.debug('upstream "', us.name, '": health checker tracks ', #order, " peer(s) (", added, " new, ",
      #removed, " forgotten)")
  end
  return true
end

-- Re-read every tracked peer's state when the health version moved.
local function scan_states(us)
  local hv = hdict:get(key("hv", us.name)) or 0
  if hv == us.hv then
    return
  end
  us.hv = hv
  local down, n = {}, 0
  for _, p in ipairs(us.order) do
    local st = hdict:get(p.k_st) or 0
    if st ~= 0 then
      down[p.id] = st
      n = n + 1
    end
  end
  us.down, us.ndown = down, n
end

local function expire_passive(us, t)
  -- Without active checks, a peer taken out by passive checks returns after fail_timeout.
  if us.active or not us.passive or us.ndown == 0 then
    return
  end
  for id, st in pairs(us.down) do
    if st == 2 then
      local at = hdict:get(key("at", us.name, id)) or 0
      if t - at >= us.passive.fail_timeout then
        set_state(us.name, id, 0, "fail_timeout (" .. us.passive.fail_timeout .. " s) passed")
      end
    end
  end
end

local function watch_all_down(us, t)
  local n = #us.order
  local all = n > 0 and us.ndown >= n
  local up = config.upstreams[us.name]
  local how = up.fail_open and "failing open: traffic goes to all of them"
    or "failing closed: requests get 503"
  if all then
    if not us.all_down_since then
      us.all_down_since, us.all_down_logged = t, t
      log.err('upstream "', us.name, '": all ', n, " peer(s) are unhealthy; ", how)
    elseif t - us.all_down_logged >= ALL_DOWN_LOG_EVERY then
      us.all_down_logged = t
      log.err('upstream "', us.name, '": all ', n, " peer(s) still unhealthy after ",
        fmt("%.0f", t - us.all_down_since), " s; ", how)
    end
  elseif us.all_down_since then
    log.change('upstream "', us.name, '": ', n - us.ndown, " of ", n, " peer(s) healthy again after ",
      fmt("%.1f", t - us.all_down_since), " s with none")
    us.all_down_since = nil
  end
end

local function run_check(job)
  local us, p = job.us, job.p
  local ok, good, why = pcall(probe.check, us.active, us.valid, p)
  if not ok then
    good, why = nil, "check failed: " .. tostring(good)
  end
  if not p.gone then
    local rok, err = pcall(health.record_check, us.name, p, us.active, good, why)
    if not rok then
      log.err('upstream "', us.name, '": recording the check of ', p.id, " failed: ", err)
    end
  end
  p.busy = false
  us.busy = us.busy - 1
  threads_busy = threads_busy - 1
  job.done = true
  wakeup:post(1)
end

-- Start the due checks of one upstream; returns when its next check is due.
local function schedule(us, t, jobs)
  local ac = us.active
  local next_due = t + ac.interval
  for _, p in ipairs(us.order) do
    if not p.busy then
      if p.due <= t then
        if us.busy >= ac.concurrency or threads_busy >= MAX_THREADS then
          return t + STEP
        end
        p.busy = true
        -- From the start of this check, so the period does not drift by its duration.
        p.due = t + ac.interval
        us.busy = us.busy + 1
        threads_busy = threads_busy + 1
        local job = { us = us, p = p, done = false }
        local th, err = spawn(run_check, job)
        if not th then
          p.busy = false
          us.busy = us.busy - 1
          threads_busy = threads_busy - 1
          log.err('upstream "', us.name, '": cannot start a health check thread: ', err)
          return t + STEP
        end
        job.th = th
        jobs[#jobs + 1] = job
      elseif p.due < next_due then
        next_due = p.due
      end
    end
  end
  return next_due
end

local function forget_again(us, t)
  local later = us.forget_later
  if #later == 0 then
    return
  end
  local keep = {}
  for _, f in ipairs(later) do
    if f.at <= t then
      if not us.peers[f.id] then
        forget_keys(us.name, f.id)
      end
    else
      keep[#keep + 1] = f
    end
  end
  us.forget_later = keep
end

-- slow_start: while a peer ramps (and one step after, for the full weight),
-- move the health version every ramp_step.
local function ramp(us, t)
  if not us.slow_start or t < us.ramp_next then
    return
  end
  local ru = hdict:get(key("ru", us.name))
  if ru and t <= ru + us.ramp_step then
    us.ramp_next = t + us.ramp_step
    bump(us.name)
  end
end

-- One upstream's share of a round; returns when it next needs the loop.
local function tend(us, t, jobs)
  sync_peers(us, t)
  ramp(us, t)
  scan_states(us)
  expire_passive(us, t)
  watch_all_down(us, t)
  forget_again(us, t)
  if us.active then
    return schedule(us, t, jobs)
  end
  return t + STEP
end

local function round(jobs)
  update_time()
  local t = now()
  local next_wake = t + STEP
  for _, name in ipairs(config.upstream_names) do
    local us = tracked[name]
    if us then
      local ok, due = pcall(tend, us, t, jobs)
      if ok then
        next_wake = min(next_wake, due)
      else
        log.err('upstream "', name, '": health checker round failed: ', due)
      end
    end
  end
  return next_wake
end

local function reap(jobs)
  local keep = {}
  for _, job in ipairs(jobs) do
    if job.done and job.th then
      wait(job.th)
    else
      keep[#keep + 1] = job
    end
  end
  return keep
end

-- The checker loop: rounds until abort() (another generation, lease lost, exiting).
local function check_loop(lp, abort)
  local jobs = {}
  while not abort() do
    singleton.beat(lp)
    local ok, next_wake = pcall(round, jobs)
    if not ok then
      log.err("health checker round failed: ", next_wake)
      next_wake = now() + 1
    end
    jobs = reap(jobs)
    update_time()
    local pause = max(0.001, min(STEP, next_wake - now()))
    wakeup:wait(pause)
  end
  -- Let the checks in flight end (each within its timeout) so no socket outlives the loop.
  for _, job in ipairs(jobs) do
    if job.th then
      wait(job.th)
    end
  end
end

local function become_checker()
  tracked = {}
  -- Every upstream: the ones without checks still need vanished peers forgotten.
  for _, name in ipairs(config.upstream_names) do
    tracked[name] = new_tracked(name, config.upstreams[name])
  end
  log.change("worker ", worker_pid(), " now runs the health checks")
  health.forget_removed_upstreams()
end

local checker = singleton.new({
  lease = lease.new("gen_lb:health_checker"),
  what = "health checker",
  on_lead = become_checker,
  on_step_down = function()
    log.change("worker ", worker_pid(), " no longer runs the health checks")
  end,
})
-- Longest the loop may go without a beat: a round waits for nothing longer than STEP.
checker:loop({ name = "the health checker", stale_after = 30, run = check_loop })

--- pid of the worker running the active checks (nil when none).
function _M.checker_pid()
  return checker:holder()
end

--- The checker election tick (a timer callback; runtime.init_worker starts
--- it in every worker when there are upstreams).
_M.tick = checker.tick
_M.TICK = lease.TICK

--- init_worker_by_lua (from gen_lb.runtime): per-worker state.
function _M.init_worker()
  wakeup = semaphore.new(0)
end

return _M
