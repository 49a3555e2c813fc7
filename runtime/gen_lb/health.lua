-- gen_lb.health: active and passive health of the discovered peers.
--
-- State lives in the health shared dict, so every worker sees it, under keys
-- made by key(kind, upstream, peer id) only:
--   st    0 or absent: healthy; 1: down (active checks); 2: down (passive checks)
--   ok/ko consecutive active successes / failures (incr)
--   pf    passive failures in the current fail_timeout window (incr, TTL)
--   at    when st last changed; why: the reason given then
--   chk   when the last active check ended; last: its result ("ok" or the error)
--   req/fail  requests and failed tries (incr by each worker's flush)
--   inf<W>    in-flight requests of worker W (set by that worker)
-- and, per upstream, "hv" (bumped on every st change: workers rebuild their
-- eligible sets when it moves) and "known" (peer ids the checker tracks).
--
-- Active checks run in one worker per node (a lease in the locks dict, its
-- own key), in one timer: a scheduler that starts each check as a light
-- thread when it is due, at most `concurrency` at once per upstream, each
-- bounded by its timeout, the socket always closed. Peers that appear are
-- checked at once; peers that vanish are forgotten. A state change takes no
-- lock: the writer is the single checker, or for passive failures the one
-- worker whose incr crossed max_fails.
local config = require "gen_lb.config"
local peers = require "gen_lb.peers"
local log = require "gen_lb.log"
local lease = require "gen_lb.lease"
local singleton = require "gen_lb.singleton"
local semaphore = require "ngx.semaphore"

local ngx = ngx
local now = ngx.now
local update_time = ngx.update_time
local worker_pid = ngx.worker.pid
local timer_at = ngx.timer.at
local spawn = ngx.thread.spawn
local wait = ngx.thread.wait
local tcp = ngx.socket.tcp
local concat = table.concat
local sort = table.sort
local fmt = string.format
local gsub = string.gsub
local match = string.match
local sub = string.sub
local floor = math.floor
local max = math.max
local min = math.min
local ipairs = ipairs
local pairs = pairs
local pcall = pcall
local tonumber = tonumber
local tostring = tostring

local _M = { _VERSION = "0.1.0" }

local DICT_NAME = config.dicts.health
local hdict = ngx.shared[DICT_NAME]

_M.HEALTHY, _M.DOWN_ACTIVE, _M.DOWN_PASSIVE = 0, 1, 2

-- The scheduler wakes at least this often (new peers are noticed within it).
local STEP = 0.2
-- Checks in flight at once in the whole node, whatever the upstreams ask.
local MAX_THREADS = 256
-- "All peers down" is logged on entering, on leaving, and this often in between.
local ALL_DOWN_LOG_EVERY = 10
-- Forgotten peers' keys are deleted again after this long (a worker's
-- counter flush may have re-created them meanwhile).
local FORGET_AGAIN = 3

--- The one function that names health keys.
local function key(kind, name, id)
  if id then
    return kind .. "|" .. name .. "|" .. id
  end
  return kind .. "|" .. name
end
_M.key = key

function _M.version_key(name)
  return key("hv", name)
end

--- Does this upstream have any health checking (so st can be non-zero)?
local function checked(up)
  local hc = up and up.healthcheck
  return hc ~= nil and (hc.active ~= nil or hc.passive ~= nil)
end
_M.checked = checked

function _M.state(name, id)
  return hdict:get(key("st", name, id)) or 0
end

local function bump(name)
  local v, err = hdict:incr(key("hv", name), 1, 0)
  if not v then
    log.err("lua_shared_dict ", DICT_NAME, ": cannot bump the health version of ", name, ": ", err)
  end
end

local function store(k, v, ttl)
  local ok, err, forcible = hdict:set(k, v, ttl)
  if not ok then
    log.err("lua_shared_dict ", DICT_NAME, ": cannot store ", k, ": ", err, " (raise runtime.health_dict_size)")
  elseif forcible then
    log.warn("lua_shared_dict ", DICT_NAME, " is full: storing ", k,
      " evicted other entries (raise runtime.health_dict_size)")
  end
end

local STATE_WORDS = { [0] = "healthy", [1] = "down (active checks)", [2] = "down (passive checks)" }

local function set_state(name, id, new, why)
  update_time()
  store(key("st", name, id), new)
  store(key("at", name, id), now())
  store(key("why", name, id), why)
  if new == 0 then
    store(key("ko", name, id), 0)
    hdict:delete(key("pf", name, id))
  else
    -- Coming back needs `rise` successes counted from here.
    store(key("ok", name, id), 0)
  end
  bump(name)
  if new == 0 then
    log.change('upstream "', name, '": peer ', id, " is healthy again: ", why)
  else
    log.warn('upstream "', name, '": peer ', id, " is ", STATE_WORDS[new], ": ", why)
  end
end

-- ------------------------------------------------------------------ passive

--- A failed try seen on real traffic (any worker, log or balancer phase).
--- `why`: "error", "timeout" or "HTTP 5xx". Counts towards max_fails within
--- fail_timeout; the worker whose count reaches max_fails takes the peer out.
function _M.report_failure(name, id, why)
  local up = config.upstreams[name]
  local passive = up and up.healthcheck and up.healthcheck.passive
  if not passive then
    return
  end
  local n, err = hdict:incr(key("pf", name, id), 1, 0, passive.fail_timeout)
  if not n then
    log.err("lua_shared_dict ", DICT_NAME, ": cannot count a failure of ", id, ": ", err)
    return
  end
  if n == passive.max_fails then
    hdict:delete(key("pf", name, id))
    if (hdict:get(key("st", name, id)) or 0) == 0 then
      set_state(name, id, 2, passive.max_fails .. " failed tries within " .. passive.fail_timeout
        .. " s (last: " .. why .. ")")
    end
  end
end

-- ------------------------------------------------------------------ active checks

local function sanitize(s)
  return (gsub(sub(s, 1, 60), "[%c\128-\255]", "?"))
end

local function request_for(ac, p)
  local lines = {
    "GET ", ac.path or "/", " HTTP/1.0\r\n",
    "Host: ", ac.host or p.id, "\r\n",
    "User-Agent: ", config.generator or "gen-lb", " health check\r\n",
    "Accept: */*\r\n",
    "Connection: close\r\n",
  }
  if ac.headers then
    local names = {}
    for h in pairs(ac.headers) do
      names[#names + 1] = h
    end
    sort(names)
    for _, h in ipairs(names) do
      lines[#lines + 1] = h .. ": " .. ac.headers[h] .. "\r\n"
    end
  end
  lines[#lines + 1] = "\r\n"
  return concat(lines)
end

-- Milliseconds left before `deadline`, or nil when none are (settimeout(0)
-- would mean "the default timeout", not "none").
local function left_ms(deadline)
  update_time()
  local ms = floor((deadline - now()) * 1000)
  if ms < 1 then
    return nil
  end
  return ms
end

-- One check over an open-to-be socket; returns true or nil, why. May raise:
-- the caller closes the socket whatever happens.
local function probe(sock, us, p, deadline)
  local ac = us.active
  local ms = left_ms(deadline)
  if not ms then
    return nil, "timeout"
  end
  sock:settimeout(ms)
  local ok, err = sock:connect(p.host, p.port)
  if not ok then
    return nil, "connect: " .. tostring(err)
  end
  if ac.type == "tcp" then
    return true
  end
  if ac.type == "https" then
    ms = left_ms(deadline)
    if not ms then
      return nil, "timeout"
    end
    sock:settimeout(ms)
    local session
    session, err = sock:sslhandshake(nil, ac.host, ac.ssl_verify == true)
    if not session then
      return nil, "TLS handshake: " .. tostring(err)
    end
  end
  ms = left_ms(deadline)
  if not ms then
    return nil, "timeout"
  end
  sock:settimeout(ms)
  local sent
  sent, err = sock:send(p.request)
  if not sent then
    return nil, "send: " .. tostring(err)
  end
  ms = left_ms(deadline)
  if not ms then
    return nil, "timeout"
  end
  sock:settimeout(ms)
  local line, partial
  line, err, partial = sock:receive("*l")
  if not line then
    if partial and partial ~= "" then
      return nil, "bad answer: " .. tostring(err) .. " after " .. #partial .. " byte(s): " .. sanitize(partial)
    end
    return nil, "read: " .. tostring(err)
  end
  local status = tonumber(match(line, "^HTTP/%d%.%d (%d%d%d)"))
  if not status then
    return nil, "not an HTTP status line: " .. sanitize(line)
  end
  if not us.valid[status] then
    return nil, "HTTP " .. status
  end
  return true
end

local function check(us, p)
  update_time()
  local deadline = now() + us.active.timeout
  local sock = tcp()
  local ok, good, why = pcall(probe, sock, us, p, deadline)
  sock:close()
  if not ok then
    return nil, "check failed: " .. tostring(good)
  end
  return good, why
end

local function record(us, p, good, why)
  local name, id, ac = us.name, p.id, us.active
  update_time()
  store(p.k_chk, now())
  store(p.k_last, good and "ok" or why)
  local st = hdict:get(p.k_st) or 0
  if good then
    if (hdict:get(p.k_ko) or 0) ~= 0 then
      store(p.k_ko, 0)
    end
    local n = hdict:incr(p.k_ok, 1, 0)
    if st ~= 0 and n and n >= ac.rise then
      set_state(name, id, 0, n .. " successful check(s) in a row")
    end
  else
    if (hdict:get(p.k_ok) or 0) ~= 0 then
      store(p.k_ok, 0)
    end
    local n = hdict:incr(p.k_ko, 1, 0)
    if st == 0 and n and n >= ac.fall then
      set_state(name, id, 1, n .. " failed check(s) in a row (last: " .. why .. ")")
    end
  end
end

-- ------------------------------------------------------------------ the checker (one worker)

local tracked = {}      -- name -> per-upstream checker state, in the checker worker
local wakeup           -- a semaphore, made per worker in init_worker
local threads_busy = 0

local KINDS = { "st", "ok", "ko", "pf", "at", "why", "chk", "last", "req", "fail" }

local function forget_keys(name, id)
  local st = hdict:get(key("st", name, id))
  for _, kind in ipairs(KINDS) do
    hdict:delete(key(kind, name, id))
  end
  for w = 0, ngx.worker.count() - 1 do
    hdict:delete(key("inf" .. w, name, id))
  end
  return st ~= nil and st ~= 0
end

-- The upstream names the last checker started with, one per line.
local UPSTREAMS_KEY = "upstreams"

-- Upstreams an earlier config had and this one has not (a reload removed
-- them): their health keys, found through "known|NAME", and their peer lists
-- go. Run once more a little later for what old workers still flushed on
-- their way out.
local function forget_upstreams(premature, names)
  if premature then
    return
  end
  for _, name in ipairs(names) do
    for id in (hdict:get(key("known", name)) or ""):gmatch("[^\n]+") do
      forget_keys(name, id)
    end
    hdict:delete(key("known", name))
    hdict:delete(key("hv", name))
    peers.forget(name)
  end
end

local function forget_removed_upstreams(premature)
  if premature then
    return
  end
  local removed = {}
  for name in (hdict:get(UPSTREAMS_KEY) or ""):gmatch("[^\n]+") do
    if not config.upstreams[name] then
      removed[#removed + 1] = name
    end
  end
  store(UPSTREAMS_KEY, concat(config.upstream_names, "\n"))
  if #removed > 0 then
    forget_upstreams(false, removed)
    timer_at(FORGET_AGAIN, forget_upstreams, removed)
    log.change("forgot the state of ", #removed, " upstream(s) this config no longer has: ", concat(removed, ", "))
  end
end

local function new_tracked(name, up)
  local hc = up.healthcheck or {}
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
  }
  if us.active then
    for _, s in ipairs(us.active.valid_statuses or { 200 }) do
      us.valid[s] = true
    end
  end
  return us
end

local function new_peer(us, peer)
  local name, id = us.name, peer.id
  local p = {
    id = id,
    host = peer.host,
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
    p.request = request_for(us.active, p)
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
  local ok, good, why = pcall(check, us, p)
  if not ok then
    good, why = nil, "check failed: " .. tostring(good)
  end
  if not p.gone then
    local rok, err = pcall(record, us, p, good, why)
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

-- One upstream's share of a round; returns when it next needs the loop.
local function tend(us, t, jobs)
  sync_peers(us, t)
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
  forget_removed_upstreams()
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

--- Upstreams an earlier config had and this one has not lose their state
--- (a timer callback when no checker runs: no upstreams at all).
_M.forget_removed_upstreams = forget_removed_upstreams

--- init_worker_by_lua (from gen_lb.runtime): per-worker state.
function _M.init_worker()
  wakeup = semaphore.new(0)
end

return _M
