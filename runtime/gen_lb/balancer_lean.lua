-- gen_lb.balancer_lean: the balancer's lean path, for upstreams whose
-- servers run no log phase (everything but least_conn, passive checks and
-- `counters: true`; up.log_phase, decided by plan).
--
-- Nothing is handed back at the end of a request: nginx's own state of the
-- previous try (get_last_failure) tells a retry from a first try, and the
-- peers a request tried sit in a record kept per request address (reused by
-- the next request there, never handed back). Only tries sent are counted.
--
-- Owns the per-address records of tried peers; touches, in the upstream's
-- balancer state u, only the counter reqs (and, through
-- gen_lb.balancer_try, reqs and fails of a refused peer). A first try that
-- finds a tracked request's state at its address settles it through
-- gen_lb.balancer_tracked.
local config = require "gen_lb.config"
local tries = require "gen_lb.balancer_tries"
local tracked = require "gen_lb.balancer_tracked"
local try = require "gen_lb.balancer_try"
local base = require "resty.core.base"
local ffi = require "ffi"

local ngx = ngx
local ngx_var = ngx.var
local error = error
local ipairs = ipairs
local tonumber = tonumber
local get_request = base.get_request
local lookup = tries.lookup
local settle_stale = tracked.settle_stale
local pick_else = try.pick_else
local set_current_peer = try.set_current_peer
local FFI_ERROR = try.FFI_ERROR
local NGX_BUSY = try.NGX_BUSY
local get_last_failure_c = try.get_last_failure
local set_more_tries_c = try.set_more_tries
local status_out = try.status_out
local errmsg = try.errmsg
local cast = ffi.cast
local uintptr_t = ffi.typeof("uintptr_t")

local _M = { _VERSION = "0.1.0" }

-- Whether any upstream runs the log phase: then a lean first try also
-- settles a tracked state left at its address.
local any_tracked = false
for _, name in ipairs(config.upstream_names) do
  any_tracked = any_tracked or config.upstreams[name].log_phase == true
end

-- Request address -> {n, [1..n] = peers tried}, reused by the next request
-- at that address (nginx recycles a few addresses, so the table stops
-- growing); only read on a retry, which always follows a first try of the
-- same request at the same address. Should the addresses keep changing,
-- trim() drops the table once it holds LEAN_KEYS_MAX of them (a request
-- retried just then may get its first peer again).
local lean_tries, nlean = {}, 0
local LEAN_KEYS_MAX = 4096
-- Positions of a request's tried peers in the current list (retries only).
local lean_tried = {}
local NO_TRIES = {}

-- A peer set_current_peer refused joins the positions tried (in lean_tried).
local function note_refused(_, i, tried, n)
  if tried == NO_TRIES then
    tried = lean_tried
  end
  n = n + 1
  tried[n] = i
  return tried, n
end

--- balancer_by_lua for a lean upstream (u refreshed by gen_lb.balancer): a
--- first try costs a look at nginx's state of the previous try and, with
--- retries, two stores.
function _M.balance(u)
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

  local i = u.picker:find(tried, n, key)
  local ok, err
  if i then
    local peer = u.list[i]
    ok, err = set_current_peer(peer.addr, peer.port)
  end
  if not ok then
    i = pick_else(u, i, err, tried, n, key, note_refused)
    if not i then
      return ngx.exit(NGX_BUSY)
    end
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
    rec[n] = u.list[i]
  end
end

--- The counters' flush (once a second): forget the records when too many
--- addresses were seen.
function _M.trim()
  if nlean > LEAN_KEYS_MAX then
    lean_tries, nlean = {}, 0
  end
end

return _M
