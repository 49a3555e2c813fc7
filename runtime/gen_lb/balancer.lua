-- gen_lb.balancer: the balancer_by_lua, log_by_lua, body_filter_by_lua and
-- access_by_lua entry points, and the per-upstream picker cache.
--
-- Per upstream, this worker keeps a picker built by the upstream's algorithm
-- module (gen_lb.balancer_rr, _least_conn, _chash, _random), rebuilt only when
-- the peer list's version (gen_lb.peers) changes, and its eligible set,
-- recomputed only when the upstream's health version (gen_lb.health) moves.
-- The per-request path is a clock read (the two versions are read from the
-- shared dicts at most once per millisecond, see refresh), a pick that reads
-- fields and allocates nothing, and set_current_peer.
--
-- Retries: the first try sets set_more_tries(retries); nginx runs the
-- balancer again for each further try, which never gets a peer this request
-- already tried while an untried eligible one exists.
--
-- Two paths, chosen per upstream by config (up.log_phase, decided by plan):
-- - tracked (least_conn, passive checks or `counters: true`;
--   gen_lb.balancer_tracked): the servers proxying to it run gen-lb's log
--   phase (server level, so that error_page and X-Accel-Redirect targets
--   run it too), with a pooled per-request state (gen_lb.balancer_tries);
-- - lean (everything else; gen_lb.balancer_lean): no log phase, only tries
--   sent are counted.
-- Both finish a pick, and count a failed try, through gen_lb.balancer_try;
-- counters live in gen_lb.balancer_counters.
--
-- Owns the per-upstream state u (the paths and the counters touch the
-- fields their modules name); reads the peers and health dicts.
local config = require "gen_lb.config"
local peers = require "gen_lb.peers"
local health = require "gen_lb.health"
local log = require "gen_lb.log"
local tries = require "gen_lb.balancer_tries"
local counters = require "gen_lb.balancer_counters"
local tracked = require "gen_lb.balancer_tracked"
local lean = require "gen_lb.balancer_lean"

local ngx = ngx
local now = ngx.now
local peers_get = peers.get
local hkey = health.key
local ramp = require("gen_lb.slow_start").apply
local tracked_balance = tracked.balance
local lean_balance = lean.balance
local error = error
local ipairs = ipairs
local pcall = pcall
local tostring = tostring

local _M = { _VERSION = "0.1.0" }

local ALGORITHMS = {
  round_robin = require "gen_lb.balancer_rr",
  least_conn = require "gen_lb.balancer_least_conn",
  chash = require "gen_lb.balancer_chash",
  random = require "gen_lb.balancer_random",
}

local FLUSH_EVERY = 1

local hdict = ngx.shared[config.dicts.health]
local EMPTY = peers.EMPTY

-- ------------------------------------------------------------------ per-upstream state

local ups = {}

local function new_state(name, up)
  local algo = ALGORITHMS[up.balance]
  if not algo then
    error("gen-lb: upstream " .. name .. ": unknown balance " .. tostring(up.balance), 0)
  end
  local passive = up.healthcheck.passive
  local statuses = {}
  for _, s in ipairs(passive and passive.statuses or EMPTY) do
    statuses[s] = true
  end
  local u = {
    name = name,
    algo = algo,
    tracked = up.log_phase,
    retries = up.retries,
    fail_open = up.fail_open,
    hash_var = up.hash_var,
    checked = health.checked(up),
    hv_key = health.version_key(name),
    passive_statuses = statuses,
    passive = passive ~= nil,
    slow_start = up.slow_start,
    version = -1,
    hv = -1,
    gen = 0,
    list = EMPTY,
    n = 0,
    index = {},        -- id -> position in list
    st_keys = {},
    mask = {},
    eligible = 0,
    healthy = 0,
    all_down = false,
    quiet_until = 0,
    seen_at = -1,
    skipped = 0,
  }
  -- inflight, reqs, fails (by position): this worker's tries in flight and
  -- since the last flush, bumped here per try, owned by balancer_counters.
  counters.init(u)
  u.picker = algo.new(EMPTY, u.inflight)
  u.picker:set_eligible(u.mask, 0)
  return u
end

for _, name in ipairs(config.upstream_names) do
  ups[name] = new_state(name, config.upstreams[name])
end

-- The peer list changed: new picker, counters carried over by peer id.
local function rebuild(u, list, version)
  counters.flush(u)
  local n = #list
  local index = {}
  for i = 1, n do
    index[list[i].id] = i
  end
  counters.carry(u, list, index)
  u.list, u.n, u.index = list, n, index
  u.st_keys = {}
  u.picker = u.algo.new(list, u.inflight)
  u.gen = u.gen + 1
  u.version = version
  u.hv = -1
end

-- Health moved (or the list changed): which peers may get traffic.
local function recompute(u, hv)
  local n, list, mask, st_keys = u.n, u.list, u.mask, u.st_keys
  local healthy = 0
  for i = 1, n do
    local ok = true
    if u.checked then
      local k = st_keys[i]
      if not k then
        k = hkey("st", u.name, list[i].id)
        st_keys[i] = k
      end
      ok = (hdict:get(k) or 0) == 0
    end
    mask[i] = ok
    if ok then
      healthy = healthy + 1
    end
  end
  for i = n + 1, #mask do
    mask[i] = nil
  end
  local eligible = healthy
  u.all_down = n > 0 and healthy == 0
  if u.all_down and u.fail_open then
    -- Fail open: every peer rather than none (the checker logs it, once per interval).
    for i = 1, n do
      mask[i] = true
    end
    eligible = n
  end
  if u.slow_start then
    ramp(u.picker, u.name, list, n, mask, u.slow_start)
  end
  u.picker:set_eligible(mask, eligible)
  u.healthy, u.eligible, u.hv = healthy, eligible, hv
end

-- The two versions live in shared dicts: reading them costs a lock and a
-- lookup each (about 0.7k instructions with the Lua side). They are read at
-- most once per tick of nginx's cached clock (1 ms) and, from one tick to
-- the next, only every REFRESH_REQUESTS requests or after REFRESH_MAX
-- seconds, whichever comes first: a busy worker sees a change within a
-- tick, a quiet one within REFRESH_MAX, and a worker whose requests are
-- each in a tick of their own (a slow one; every request under valgrind)
-- pays a quarter to a third of a read per request rather than a whole one
-- (4 requests, or 2 ms: 3 requests 0.7 ms apart under valgrind).
local REFRESH_REQUESTS = 4
local REFRESH_MAX = 0.002

local function refresh(u, force)
  local t = now()
  if t == u.seen_at and not force then
    return
  end
  local k = u.skipped + 1
  if k < REFRESH_REQUESTS and t - u.seen_at < REFRESH_MAX and not force then
    u.skipped = k
    return
  end
  u.skipped = 0
  u.seen_at = t
  local list, version = peers_get(u.name)
  local hv = 0
  if u.checked then
    hv = hdict:get(u.hv_key) or 0
  end
  if version ~= u.version then
    rebuild(u, list, version)
  end
  if hv ~= u.hv then
    recompute(u, hv)
  end
end

-- ------------------------------------------------------------------ entry points

-- The upstream's state, refreshed; a name nginx.conf does not know is the caller's bug.
local function upstream(name)
  local u = ups[name]
  if not u then
    error("gen-lb balancer: unknown upstream " .. tostring(name), 3)
  end
  refresh(u)
  return u
end

--- balancer_by_lua: pick a peer of upstream `name` for this try.
function _M.balance(name)
  local u = upstream(name)
  if u.tracked then
    return tracked_balance(u)
  end
  return lean_balance(u)
end

--- log_by_lua (every request of a server that proxies to an upstream
--- needing it): the request is over; account for its last try.
_M.log = tracked.log

--- body_filter_by_lua (locations proxying to an upstream with passive
--- checks): how far the answer's body got, for the log phase.
_M.body = tracked.body

--- access_by_lua for upstreams with fail_open = false: 503 when no peer may get traffic.
function _M.access(name)
  local u = upstream(name)
  if u.eligible == 0 then
    return ngx.exit(ngx.HTTP_SERVICE_UNAVAILABLE)
  end
end

local function flush_all(premature)
  tries.sweep()
  lean.trim()
  for _, name in ipairs(config.upstream_names) do
    local u = ups[name]
    counters.flush(u)
    if premature then
      counters.forget_in_flight(u)
    end
  end
end

local function on_flush(premature)
  local ok, err = pcall(flush_all, premature)
  if not ok then
    log.err("balancer counters flush failed: ", err)
  end
end

--- The counters' flush (a timer callback every FLUSH_EVERY seconds, started
--- by gen_lb.runtime when there are upstreams).
_M.on_flush = on_flush
_M.FLUSH_EVERY = FLUSH_EVERY

--- init_worker_by_lua (from gen_lb.runtime): per-worker state.
function _M.init_worker()
  counters.init_worker()
end

--- This worker's view of an upstream (for tests and the status endpoint).
function _M.view(name)
  local u = ups[name]
  if not u then
    return nil
  end
  refresh(u, true)
  local out = { version = u.version, healthy = u.healthy, eligible = u.eligible, all_down = u.all_down, peers = {} }
  for i = 1, u.n do
    out.peers[i] = { id = u.list[i].id, eligible = u.mask[i] == true, inflight = u.inflight[i] }
  end
  return out
end

_M.algorithms = ALGORITHMS

return _M
