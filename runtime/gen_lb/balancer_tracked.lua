-- gen_lb.balancer_tracked: the balancer's tracked path, for upstreams whose
-- servers run gen-lb's log phase (least_conn, passive checks or
-- `counters: true`; up.log_phase, decided by plan).
--
-- A request's tries are a pooled state (gen_lb.balancer_tries) found by the
-- request's address; the log phase hands it back. The state keeps the tries
-- in flight (least_conn's counts), the peers tried (a retry gets an untried
-- one) and, for passive checks, how far the answer's body got (the body
-- filter): a request whose upstream cut its answer short completes for
-- nginx with the status the upstream sent (200, and $request_completion
-- "OK", chunked or not) but its body filter never saw the last buffer.
--
-- Touches, in the upstream's balancer state u, the counters inflight and
-- reqs (a try starts) and, through gen_lb.balancer_try, reqs and fails;
-- in the request's tries state (owned by gen_lb.balancer_tries), its body
-- field. Owns nothing else.
local tries = require "gen_lb.balancer_tries"
local try = require "gen_lb.balancer_try"
local base = require "resty.core.base"
local core_ctx = require "resty.core.ctx"
require "resty.core.param" -- declares ngx_http_lua_ffi_get_body_filter_param_eof
local ffi = require "ffi"

local ngx = ngx
local ngx_var = ngx.var
local error = error
local tonumber = tonumber
local get_request = base.get_request
local request_ctx = core_ctx.get_ctx_table
local lookup = tries.lookup
local acquire = tries.acquire
local release = tries.release
local finish = tries.finish
local add_try = tries.add
local renumber = tries.renumber
local current_request = try.current_request
local quiet_log = try.quiet_log
local nth_from_end = try.nth_from_end
local try_failed = try.failed
local pick_else = try.pick_else
local set_current_peer = try.set_current_peer
local C = try.C
local FFI_BAD_CONTEXT = try.FFI_BAD_CONTEXT
local FFI_ERROR = try.FFI_ERROR
local NGX_BUSY = try.NGX_BUSY
local get_last_failure_c = try.get_last_failure
local set_more_tries_c = try.set_more_tries
local status_out = try.status_out
local errmsg = try.errmsg
local cast = ffi.cast
local uintptr_t = ffi.typeof("uintptr_t")

local _M = { _VERSION = "0.1.0" }

-- st.body: 0 before any of the answer's body went through the body filter,
-- BODY_SENT once some did, BODY_WHOLE once its last buffer did.
local BODY_SENT, BODY_WHOLE = 1, 2

--- A first try found the state of an earlier upstream request at its
--- address: a finished request's whose log phase never ran, or this
--- request's before an internal redirect (error_page, X-Accel-Redirect):
--- then that try's outcome counts. (The lean path calls it too.)
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
_M.settle_stale = settle_stale

-- A peer set_current_peer refused is one of the request's tries.
local function note_refused(st, i)
  add_try(st, i, st.u.list[i].id)
  return st.tried, st.n
end

--- balancer_by_lua for a tracked upstream (u refreshed by gen_lb.balancer).
function _M.balance(u)
  local r, addr = current_request()
  local st = lookup(addr)
  -- nginx's state of this upstream's previous try (0: this is the first)
  -- and that try's status.
  local failed, code
  if st then
    local state = get_last_failure_c(r, status_out, errmsg)
    if state == FFI_ERROR then
      -- Not expected in balancer_by_lua: then this try counts as a first one.
      quiet_log(u, 'upstream "', u.name, '": balancer.get_last_failure() failed: ', ffi.string(errmsg[0]))
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

  local i = u.picker:find(st.tried, st.n, key)
  local ok, err
  if i then
    local peer = u.list[i]
    ok, err = set_current_peer(peer.addr, peer.port)
  end
  if not ok then
    i = pick_else(u, i, err, st.tried, st.n, key, note_refused, st)
    if not i then
      return ngx.exit(NGX_BUSY)
    end
  end
  add_try(st, i, u.list[i].id)
  u.inflight[i] = u.inflight[i] + 1
  u.reqs[i] = u.reqs[i] + 1
end

--- body_filter_by_lua (locations proxying to an upstream with passive
--- checks): note how far the answer's body got.
function _M.body()
  local r = get_request()
  local st = lookup(tonumber(cast(uintptr_t, r)))
  if st then
    st.body = C.ngx_http_lua_ffi_get_body_filter_param_eof(r) == 1 and BODY_WHOLE or BODY_SENT
  end
end

--- log_by_lua: the request is over; account for its last try.
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
  elseif u and st.body == BODY_SENT and u.passive and ngx_var.request_completion == "OK" then
    -- The body began and its last buffer never came, yet nginx completed
    -- the request: the upstream cut the answer short ("upstream prematurely
    -- closed connection", a reset or a timeout mid-body). A client that went
    -- away leaves $request_completion empty: not the upstream's failure.
    try.cut_short(u, i)
  end
  release(st)
end

return _M
