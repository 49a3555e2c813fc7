-- gen_lb.health: health state of the discovered peers, all the balancer
-- needs: the keys, set_state, and passive reports from real traffic.
--
-- Owns the health shared dict's layout: every key is made by key(kind,
-- upstream, peer id) only:
--   st    0 or absent: healthy; 1: down (active checks); 2: down (passive checks);
--         3: joined, waiting for its first active check (probe_new)
--   ok/ko consecutive active successes / failures (incr)
--   pf    passive failures in the current fail_timeout window (incr, TTL)
--   at    when st last changed; why: the reason given then
--   chk   when the last active check ended; last: its result ("ok" or the error)
--   req/fail  requests and failed tries (incr by each worker's flush)
--   inf<W>    in-flight requests of worker W (set by that worker)
-- and, per upstream, "hv" (bumped on every st change: workers rebuild their
-- eligible sets when it moves), "known" (peer ids the checker tracks) and
-- "ru" (until when a peer ramps its slow_start weight),
-- plus "upstreams" (the names the last checker started with).
-- Writers: the checker (gen_lb.health_checker), the balancer's counters
-- (gen_lb.balancer_counters) and passive reports. A state change takes no
-- lock: the writer is the single checker, or for passive failures the one
-- worker whose incr crossed max_fails.
local config = require "gen_lb.config"
local log = require "gen_lb.log"
local peers = require "gen_lb.peers"

local ngx = ngx
local now = ngx.now
local update_time = ngx.update_time
local timer_at = ngx.timer.at
local concat = table.concat
local ipairs = ipairs

local _M = { _VERSION = "0.1.0" }

local DICT_NAME = config.dicts.health
local hdict = ngx.shared[DICT_NAME]

_M.HEALTHY, _M.DOWN_ACTIVE, _M.DOWN_PASSIVE, _M.PENDING = 0, 1, 2, 3


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

--- Does this upstream's health version matter to the balancer: health
--- checking (so st can be non-zero), or slow_start (weights follow it)?
local function checked(up)
  local hc = up.healthcheck
  return hc.active ~= nil or hc.passive ~= nil or up.slow_start ~= nil
end
_M.checked = checked

function _M.state(name, id)
  return hdict:get(key("st", name, id)) or 0
end

--- The upstream's health version moves: workers rebuild their eligible sets.
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

_M.bump = bump

--- Store one health key, logging a full dict.
_M.store = store

local STATE_WORDS = { [0] = "healthy", [1] = "down (active checks)", [2] = "down (passive checks)",
  [3] = "waiting for its first check" }

-- A peer of `name` starts its slow_start ramp at t: the checker moves the
-- health version until "ru" (ramp until) passes, so workers recompute weights.
local function ramp_from(name, t)
  local up = config.upstreams[name]
  local ss = up and up.slow_start
  if ss and (hdict:get(key("ru", name)) or 0) < t + ss then
    store(key("ru", name), t + ss)
  end
end

--- Change the state of a peer (0 healthy, 1 down by active, 2 down by passive checks).
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
  if new == 0 then
    ramp_from(name, now())
  end
  bump(name)
  if new == 0 then
    log.change('upstream "', name, '": peer ', id, " is healthy again: ", why)
  else
    log.warn('upstream "', name, '": peer ', id, " is ", STATE_WORDS[new], ": ", why)
  end
end

_M.set_state = set_state

--- Peers that joined an upstream's list (the publisher, before the list is
--- visible to any worker, so no request can reach them first). With active
--- checks and probe_new they wait for their first check to pass; their join
--- time ("at") is where slow_start's ramp begins. A peer absent from the
--- previous list is new whatever the dict still holds of it; one that stayed
--- is never passed here, so its state is kept.
function _M.joined(name, ids)
  local up = config.upstreams[name]
  if not up or #ids == 0 then
    return
  end
  local ac = up.healthcheck.active
  local hold = ac ~= nil and ac.probe_new
  if not hold and not up.slow_start then
    return
  end
  update_time()
  local t = now()
  for _, id in ipairs(ids) do
    if hold then
      store(key("st", name, id), 3)
      store(key("why", name, id), "joined: waiting for its first check")
      store(key("ok", name, id), 0)
      store(key("ko", name, id), 0)
    end
    store(key("at", name, id), t)
  end
  if not hold then
    -- Held peers ramp from their first passed check (set_state).
    ramp_from(name, t)
  end
  bump(name)
end

-- ------------------------------------------------------------------ passive

--- A failed try seen on real traffic (any worker, log or balancer phase).
--- `why`: "error", "timeout" or "HTTP 5xx". Counts towards max_fails within
--- fail_timeout; the worker whose count reaches max_fails takes the peer out.
function _M.report_failure(name, id, why)
  local up = config.upstreams[name]
  local passive = up and up.healthcheck.passive
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

local KINDS = { "st", "ok", "ko", "pf", "at", "why", "chk", "last", "req", "fail" }

--- Delete every key of one peer; returns whether it was down.
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
_M.forget_keys = forget_keys

--- One active check's result for peer p ({id, k_st, k_ok, k_ko, k_chk, k_last}):
--- counts towards ac.rise / ac.fall and may change the state.
function _M.record_check(name, p, ac, good, why)
  local id = p.id
  update_time()
  store(p.k_chk, now())
  store(p.k_last, good and "ok" or why)
  local st = hdict:get(p.k_st) or 0
  if good then
    if (hdict:get(p.k_ko) or 0) ~= 0 then
      store(p.k_ko, 0)
    end
    local n = hdict:incr(p.k_ok, 1, 0)
    if st == 3 then
      -- A joined peer is proven by one passing check (it was never down).
      set_state(name, id, 0, "its first check passed")
    elseif st ~= 0 and n and n >= ac.rise then
      set_state(name, id, 0, n .. " successful check(s) in a row")
    end
  else
    if (hdict:get(p.k_ok) or 0) ~= 0 then
      store(p.k_ok, 0)
    end
    local n = hdict:incr(p.k_ko, 1, 0)
    if (st == 0 or st == 3) and n and n >= ac.fall then
      set_state(name, id, 1, n .. " failed check(s) in a row (last: " .. why .. ")")
    end
  end
end

-- Forgotten peers' keys are deleted again after this long (a worker's
-- counter flush may have re-created them meanwhile).
local FORGET_AGAIN = 3

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
    hdict:delete(key("ru", name))
    peers.forget(name)
  end
end

--- Upstreams an earlier config had and this one has not lose their state
--- (the checker, as it starts; a timer callback when no checker runs).
function _M.forget_removed_upstreams(premature)
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

return _M
