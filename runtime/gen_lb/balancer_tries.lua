-- gen_lb.balancer_tries: the pooled per-request state of the balancer's
-- tries, and its sweep.
--
-- A request's tries live in a pooled state table found by the request's
-- address (no ngx.ctx: that costs a table and a registry reference per
-- request). The log phase hands the state back. An address can only be
-- reused once its request is over, so a balancer call that finds a state at
-- its address yet is no retry finishes that stale state first (the balancer
-- decides that). Subrequests (mirror, auth_request) never run the log
-- phase: for internal requests the state also holds their ngx.ctx weakly,
-- and the sweep finishes those whose ctx was collected.
--
-- Owns the states, the pool and the address table; touches, in the
-- upstream's balancer state u, only inflight (a finished try leaves it) and
-- reads gen and index (positions by peer id).
local ngx = ngx
local now = ngx.now
local collectgarbage = collectgarbage
local pairs = pairs
local setmetatable = setmetatable

local _M = { _VERSION = "0.1.0" }

local WEAK_VALUES = { __mode = "v" }

-- Every state ever made (as many as this worker's peak of concurrent
-- proxied requests), and the free ones.
local states, nstates = {}, 0
local pool, npool = {}, 0
local picks = 0    -- tries started by this worker (the sweep's sign of life)

-- Request address (a number) -> its state, or false once the request is
-- over: the addresses nginx recycles keep their slots, so the table stops
-- growing and the per-request path inserts no new keys. The sweep drops the
-- false ones when there are many.
local live, nlive = {}, 0
local LIVE_KEYS_MAX = 4096

--- The state of the request at `addr`, if one is live.
function _M.lookup(addr)
  return live[addr]
end

--- A state for the request at `addr`: {u, gen, n, tried, ids, key, weak,
--- holder, body} (body: how far the answer's body got, see
--- gen_lb.balancer_tracked).
function _M.acquire(addr)
  local st
  if npool > 0 then
    st = pool[npool]
    pool[npool] = nil
    npool = npool - 1
  else
    st = { busy = false, addr = false, u = false, gen = 0, n = 0, key = false, tried = {}, ids = {},
      weak = false, holder = setmetatable({}, WEAK_VALUES), body = 0 }
    nstates = nstates + 1
    states[nstates] = st
  end
  st.busy = true
  st.addr = addr
  if live[addr] == nil then
    nlive = nlive + 1
  end
  live[addr] = st
  return st
end

local function release(st)
  if live[st.addr] == st then
    live[st.addr] = false
  end
  st.busy, st.addr, st.weak = false, false, false
  st.holder[1] = nil
  st.u, st.key, st.n, st.body = false, false, 0, 0
  npool = npool + 1
  pool[npool] = st
end
_M.release = release

--- A try of peer position i (peer `id`) starts.
function _M.add(st, i, id)
  local k = st.n + 1
  st.n = k
  st.tried[k] = i
  st.ids[k] = id
  picks = picks + 1
end

-- Position of the request's k-th try in the current list (nil: the peer is gone).
local function tried_at(u, st, k)
  if st.gen == u.gen then
    return st.tried[k]
  end
  return u.index[st.ids[k]]
end

--- The list changed between two tries of one request: renumber its tries.
function _M.renumber(u, st)
  for k = 1, st.n do
    st.tried[k] = u.index[st.ids[k]] or 0
  end
  st.gen = u.gen
end

--- The request's last try is over (its log phase, a retry, or a stale state
--- found by a new request at the same address): it is no longer in flight.
--- Returns its upstream and peer position, if that peer is still listed.
local function finish(st)
  local u = st.u
  if u and st.n > 0 then
    local i = tried_at(u, st, st.n)
    if i then
      local inf = u.inflight[i]
      if inf > 0 then
        u.inflight[i] = inf - 1
      end
      return u, i
    end
  end
  return nil
end
_M.finish = finish

-- Subrequests whose log phase never ran: their ctx was collected. Also
-- forgets the addresses of finished requests once there are many.
-- Returns how many such subrequests are still in use afterwards.
local function reap_orphans()
  local left, busy = 0, 0
  for k = 1, nstates do
    local st = states[k]
    if st.busy and st.weak then
      if st.holder[1] == nil then
        finish(st)
        release(st)
      else
        left = left + 1
      end
    end
    if st.busy then
      busy = busy + 1
    end
  end
  -- Rebuilt only when most keys are dead, so a worker with many requests in
  -- flight does not copy them every second.
  if nlive > LIVE_KEYS_MAX and nlive > 2 * busy then
    local kept, n = {}, 0
    for r, st in pairs(live) do
      if st then
        kept[r] = st
        n = n + 1
      end
    end
    live, nlive = kept, n
  end
  return left
end

-- A busy worker collects garbage all the time, so an orphan is found within
-- seconds. An idle one may not collect for a long while: when no request came
-- since the last sweep yet some still look in flight, collect once (at most
-- every FORCED_GC_EVERY seconds) and look again.
local FORCED_GC_EVERY = 10
local picks_seen, forced_at = 0, 0

--- Once a second (the counters timer): finish orphaned subrequests.
function _M.sweep()
  local left = reap_orphans()
  if left > 0 and picks == picks_seen then
    local t = now()
    if t - forced_at >= FORCED_GC_EVERY then
      forced_at = t
      collectgarbage("collect")
      reap_orphans()
    end
  end
  picks_seen = picks
end

return _M
