-- gen_lb.balancer: the balancer_by_lua, log_by_lua and access_by_lua entry
-- points, and the per-upstream picker cache.
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
-- - tracked (least_conn, passive checks or `counters: true`): the servers
--   proxying to it run gen-lb's log phase (server level, so that error_page
--   and X-Accel-Redirect targets run it too). A request's tries are a pooled
--   state (gen_lb.balancer_tries) that the log phase hands back; it keeps
--   in-flight counts, failed tries, passive reports.
-- - lean (everything else): no log phase. nginx's own state of the previous
--   try (get_last_failure) tells a retry from a first try; the peers a
--   request tried sit in a record kept per request address (reused, never
--   handed back). Only tries sent are counted.
-- Counters live in gen_lb.balancer_counters.
--
-- Owns the per-upstream state u; reads the peers and health dicts, reports
-- failed tries to gen_lb.health.
local config = require "gen_lb.config"
local peers = require "gen_lb.peers"
local health = require "gen_lb.health"
local log = require "gen_lb.log"
local tries = require "gen_lb.balancer_tries"
local counters = require "gen_lb.balancer_counters"
local ngx_balancer = require "ngx.balancer"
local base = require "resty.core.base"
local core_ctx = require "resty.core.ctx"
local ffi = require "ffi"

local ngx = ngx
local ngx_var = ngx.var
local now = ngx.now
local set_current_peer = ngx_balancer.set_current_peer
local get_request = base.get_request
local request_ctx = core_ctx.get_ctx_table
local lookup = tries.lookup
local acquire = tries.acquire
local release = tries.release
local finish = tries.finish
local add_try = tries.add
local renumber = tries.renumber
-- The two calls every request makes go straight to the functions behind
-- ngx.req.is_internal and ngx.status, with the request we already hold
-- (the API would look it up again, and ngx.status goes through a metatable).
-- lua-resty-core declares them, the same in lua-nginx-module 0.10.23
-- (resty/core/misc.lua) and 0.10.31: int f(ngx_http_request_t *r), which
-- returns FFI_BAD_CONTEXT (-100) for a fake request (timers, init) and
-- otherwise r->internal (0, 1) or the response status (0 while unset).
local C = ffi.C
local FFI_BAD_CONTEXT = -100
local cast = ffi.cast
local uintptr_t = ffi.typeof("uintptr_t")
-- The same for balancer.get_last_failure and set_more_tries (declared by
-- ngx.balancer alike in 0.10.23 and 0.10.31: int f(r, ..., char **err)):
-- their wrappers look the request up again, and the lean path calls one of
-- them on every request. get_last_failure returns nginx's state of the
-- previous try: 0 on a first try (a new upstream request starts at 0), the
-- NGX_PEER_* bits of a failed one, FFI_ERROR (-1) outside the balancer.
local get_last_failure_c = C.ngx_http_lua_ffi_balancer_get_last_failure
local set_more_tries_c = C.ngx_http_lua_ffi_balancer_set_more_tries
local status_out = ffi.new("int[1]")
local errmsg = ffi.new("char *[1]")
local FFI_ERROR = -1
local peers_get = peers.get
local hkey = health.key
local cut_short = health.cut_short
local ramp = require("gen_lb.slow_start").apply
local error = error
local ipairs = ipairs
local pcall = pcall
local tonumber = tonumber
local tostring = tostring
local match = string.match
local find = string.find
local sub = string.sub

local _M = { _VERSION = "0.1.0" }

local ALGORITHMS = {
  round_robin = require "gen_lb.balancer_rr",
  least_conn = require "gen_lb.balancer_least_conn",
  chash = require "gen_lb.balancer_chash",
  random = require "gen_lb.balancer_random",
}

-- What get_peer returns for "no live upstreams": nginx answers 502, as it
-- does for a static upstream whose servers are all down.
local NGX_BUSY = -3
-- A peer-less or broken upstream is logged at most this often per worker.
local QUIET = 10
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

-- Whether any upstream runs the log phase: then a lean first try also
-- settles a tracked state left at its address (see balance_lean).
local any_tracked = false
for _, name in ipairs(config.upstream_names) do
  ups[name] = new_state(name, config.upstreams[name])
  any_tracked = any_tracked or ups[name].tracked
end

-- Lean path: request address -> {n, [1..n] = peers tried}, reused by the
-- next request at that address (nginx recycles a few addresses, so the
-- table stops growing); only read on a retry, which always follows a first
-- try of the same request at the same address. Should the addresses keep
-- changing, the flush drops the table once it holds LEAN_KEYS_MAX of them
-- (a request retried just then may get its first peer again).
local lean_tries, nlean = {}, 0
local LEAN_KEYS_MAX = 4096
-- Positions of a lean request's tried peers in the current list (retries only).
local lean_tried = {}
local NO_TRIES = {}

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

-- The `back`-th entry from the end of an $upstream_* variable: entries are
-- separated by ", " (tries) or " : " (between upstreams, after an internal
-- redirect; in the balancer phase the try being chosen now is an empty last
-- entry). A separator's colon has a space after it, an address's never.
local function nth_from_end(value, back)
  if not value then
    return nil
  end
  local parts, n, from = {}, 0, 1
  while true do
    local at, to = find(value, "%s*[,:]%s", from)
    n = n + 1
    parts[n] = match(sub(value, from, at and at - 1 or -1), "^%s*(.-)%s*$")
    if not at then
      break
    end
    from = to + 1
  end
  return parts[n - back + 1]
end

-- A try that ended badly: status code, and whether any response header came.
local function try_failed(u, i, code, back)
  local header_time = nth_from_end(ngx_var.upstream_header_time, back)
  local no_response = header_time == nil or header_time == "-"
  local why
  if no_response then
    why = code == 504 and "timeout" or "error"
  else
    why = "HTTP " .. tostring(code)
  end
  if no_response or (code and code >= 500) then
    u.fails[i] = u.fails[i] + 1
  end
  if no_response or u.passive_statuses[code] then
    local ok, err = pcall(health.report_failure, u.name, u.list[i].id, why)
    if not ok then
      log.err('upstream "', u.name, '": recording a failed try failed: ', err)
    end
  end
end

local function quiet_log(u, ...)
  local t = now()
  if t >= u.quiet_until then
    u.quiet_until = t + QUIET
    log.err(...)
  end
end

-- set_current_peer refused peer i (gen_lb.peers lists IP literals only, so
-- it should not): that counts as the peer's failed try, and the request
-- moves on to another peer in this same call. Returns the peer set, or nil
-- when every eligible one was refused (then 502, as for no live peers).
local function refused(u, st, key, i, err)
  for _ = 1, u.n do
    local id = u.list[i].id
    quiet_log(u, 'upstream "', u.name, '": set_current_peer(', id, ") failed: ", err, "; trying another peer")
    add_try(st, i, id)
    u.reqs[i] = u.reqs[i] + 1
    u.fails[i] = u.fails[i] + 1
    local rok, rerr = pcall(health.report_failure, u.name, id, "set_current_peer: " .. tostring(err))
    if not rok then
      log.err('upstream "', u.name, '": recording a failed try failed: ', rerr)
    end
    i = u.picker:find(st.tried, st.n, key)
    if not i then
      return nil
    end
    local ok
    ok, err = set_current_peer(u.list[i].addr, u.list[i].port)
    if ok then
      return i
    end
  end
  return nil
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

-- The request nginx is running, and its address (the key of `live`).
local function current_request()
  local r = get_request()
  return r, tonumber(cast(uintptr_t, r))
end

-- A first try found the state of an earlier upstream request at its
-- address: a finished request's whose log phase never ran, or this
-- request's before an internal redirect (error_page, X-Accel-Redirect):
-- then that try's outcome counts.
local function settle_stale(st)
  local pu, pi = finish(st)
  if pu and nth_from_end(ngx_var.upstream_addr, 2) == st.ids[st.n] then
    local prev = tonumber(nth_from_end(ngx_var.upstream_status, 2))
    if prev and prev >= 500 then
      try_failed(pu, pi, prev, 2)
    end
  end
  release(st)
end

-- The tracked path: pooled per-request state, handed back by the log phase.
local function balance_tracked(u, name)
  local r, addr = current_request()
  local st = lookup(addr)
  -- nginx's state of this upstream's previous try (0: this is the first)
  -- and that try's status.
  local failed, code
  if st then
    local state = get_last_failure_c(r, status_out, errmsg)
    if state == FFI_ERROR then
      -- Not expected in balancer_by_lua: then this try counts as a first one.
      quiet_log(u, 'upstream "', name, '": balancer.get_last_failure() failed: ', ffi.string(errmsg[0]))
    elseif state ~= 0 then
      failed, code = true, status_out[0]
    end
  end
  local key
  if failed then
    -- nginx is retrying: the previous try failed.
    local _, prev = finish(st)
    if prev then
      try_failed(u, prev, code, 2)
    end
    if st.gen ~= u.gen then
      renumber(u, st)
    end
    key = st.key or nil
  else
    if st then
      settle_stale(st)
    end
    st = acquire(addr)
    st.u, st.gen = u, u.gen
    local internal = C.ngx_http_lua_ffi_req_is_internal(r)
    if internal == FFI_BAD_CONTEXT then
      error("gen-lb balancer: not in a request (" .. internal .. ")", 3)
    end
    if internal ~= 0 then
      -- A subrequest may never run the log phase: let the sweep see its end.
      st.weak = true
      st.holder[1] = request_ctx()
    end
    if u.retries > 0 then
      set_more_tries_c(r, u.retries, errmsg)
    end
    if u.hash_var then
      key = ngx_var[u.hash_var] or ""
      st.key = key
    end
  end

  local picker = u.picker
  local i = picker:find(st.tried, st.n, key)
  if not i and st.n > 0 then
    -- Every eligible peer was tried: any of them again.
    i = picker:find(st.tried, 0, key)
  end
  if not i then
    if u.n == 0 then
      quiet_log(u, 'upstream "', name, '": no peers (Consul has not listed any); answering 502')
    end
    return ngx.exit(NGX_BUSY)
  end
  local peer = u.list[i]
  local ok, err = set_current_peer(peer.addr, peer.port)
  if not ok then
    i = refused(u, st, key, i, err)
    if not i then
      return ngx.exit(NGX_BUSY)
    end
    peer = u.list[i]
  end
  add_try(st, i, peer.id)
  u.inflight[i] = u.inflight[i] + 1
  u.reqs[i] = u.reqs[i] + 1
end

-- The lean path's refusal of peer i by set_current_peer: counted as that
-- peer's failed try, then the next eligible peer; `tried` (lean_tried, n
-- entries) grows with each refused one. Returns the peer set, or nil when
-- every eligible one was refused.
local function lean_refused(u, tried, n, key, i, err)
  for _ = 1, u.n do
    local id = u.list[i].id
    quiet_log(u, 'upstream "', u.name, '": set_current_peer(', id, ") failed: ", err, "; trying another peer")
    u.reqs[i] = u.reqs[i] + 1
    u.fails[i] = u.fails[i] + 1
    local rok, rerr = pcall(health.report_failure, u.name, id, "set_current_peer: " .. tostring(err))
    if not rok then
      log.err('upstream "', u.name, '": recording a failed try failed: ', rerr)
    end
    n = n + 1
    tried[n] = i
    i = u.picker:find(tried, n, key)
    if not i then
      return nil
    end
    local ok
    ok, err = set_current_peer(u.list[i].addr, u.list[i].port)
    if ok then
      return i
    end
  end
  return nil
end

-- The lean path: no log phase, nothing handed back; a first try costs a
-- look at nginx's state of the previous try and, with retries, two stores.
local function balance_lean(u, name)
  local r = get_request()
  local state = get_last_failure_c(r, status_out, errmsg)
  if state == FFI_ERROR then
    error("gen-lb balancer: " .. ffi.string(errmsg[0]), 3)
  end
  local addr = tonumber(cast(uintptr_t, r))
  local rec, tried, n
  if state == 0 then
    if any_tracked then
      local st = lookup(addr)
      if st then
        settle_stale(st)
      end
    end
    if u.retries > 0 then
      set_more_tries_c(r, u.retries, errmsg)
    end
    tried, n = NO_TRIES, 0
  else
    -- nginx is retrying: the previous try failed. The peers tried so far,
    -- by their position in the current list (it may have changed since).
    rec = lean_tries[addr]
    n = rec and rec.n or 0
    local index = u.index
    for k = 1, n do
      lean_tried[k] = index[rec[k].id] or 0
    end
    tried = lean_tried
  end
  local key
  if u.hash_var then
    key = ngx_var[u.hash_var] or ""
  end

  local picker = u.picker
  local i = picker:find(tried, n, key)
  if not i and n > 0 then
    -- Every eligible peer was tried: any of them again.
    i = picker:find(tried, 0, key)
  end
  if not i then
    if u.n == 0 then
      quiet_log(u, 'upstream "', name, '": no peers (Consul has not listed any); answering 502')
    end
    return ngx.exit(NGX_BUSY)
  end
  local peer = u.list[i]
  local ok, err = set_current_peer(peer.addr, peer.port)
  if not ok then
    -- As on the tracked path: the refusal is the peer's failed try, and the
    -- request moves on to another peer in this same call.
    if tried == NO_TRIES then
      tried = lean_tried
    end
    i = lean_refused(u, tried, n, key, i, err)
    if not i then
      return ngx.exit(NGX_BUSY)
    end
    peer = u.list[i]
  end
  u.reqs[i] = u.reqs[i] + 1
  if u.retries > 0 then
    if not rec then
      rec = lean_tries[addr]
      if not rec then
        rec = { n = 0 }
        lean_tries[addr] = rec
        nlean = nlean + 1
      end
      n = 0
    end
    n = n + 1
    rec.n = n
    rec[n] = peer
  end
end

--- balancer_by_lua: pick a peer of upstream `name` for this try.
function _M.balance(name)
  local u = upstream(name)
  if u.tracked then
    return balance_tracked(u, name)
  end
  return balance_lean(u, name)
end

--- log_by_lua (every request of a server that proxies to an upstream): the
--- request is over; account for its last try.
function _M.log()
  local r, addr = current_request()
  local st = lookup(addr)
  if not st then
    return
  end
  local u, i = finish(st)
  -- FFI_BAD_CONTEXT is below 500: no response status to judge, nothing counted.
  if u and C.ngx_http_lua_ffi_get_resp_status(r) >= 500 then
    local code = tonumber(nth_from_end(ngx_var.upstream_status, 1))
    if code and code >= 500 then
      try_failed(u, i, code, 1)
    end
  elseif u and u.passive and cut_short() then
    -- A 200 whose body the upstream cut short: the client got a truncated answer.
    u.fails[i] = u.fails[i] + 1
    local ok, err = pcall(health.report_failure, u.name, u.list[i].id, "response cut short")
    if not ok then
      log.err('upstream "', u.name, '": recording a failed try failed: ', err)
    end
  end
  release(st)
end

--- access_by_lua for upstreams with fail_open = false: 503 when no peer may get traffic.
function _M.access(name)
  local u = upstream(name)
  if u.eligible == 0 then
    return ngx.exit(ngx.HTTP_SERVICE_UNAVAILABLE)
  end
end

local function flush_all(premature)
  tries.sweep()
  if nlean > LEAN_KEYS_MAX then
    lean_tries, nlean = {}, 0
  end
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
