-- gen_lb.balancer_try: one try of a proxied request, shared by the balancer's
-- two paths (gen_lb.balancer_tracked, gen_lb.balancer_lean): nginx's state of
-- the previous try, the rest of a pick once the path's own first look (one
-- find and set_current_peer, inline for its cost) did not set a peer: all
-- tried, none listed, or a peer nginx refused (counted as failed, and the
-- request moves on), and how a try that ended badly is counted.
--
-- Touches, in the upstream's balancer state u, only the counters reqs and
-- fails (a refused or failed try) and quiet_until (its rate-limited log);
-- reads list, n, picker, name, passive_statuses. Reports failed tries to
-- gen_lb.health (report_failure). Calls nginx through ngx.balancer and the
-- FFI functions lua-resty-core declares.
local health = require "gen_lb.health"
local log = require "gen_lb.log"
local ngx_balancer = require "ngx.balancer"
local base = require "resty.core.base"
local ffi = require "ffi"

local ngx = ngx
local ngx_var = ngx.var
local now = ngx.now
local set_current_peer = ngx_balancer.set_current_peer
local get_request = base.get_request
local report_failure = health.report_failure
local pcall = pcall
local tonumber = tonumber
local tostring = tostring
local match = string.match
local find = string.find
local sub = string.sub

local _M = { _VERSION = "0.1.0" }

_M.set_current_peer = set_current_peer

-- The calls every request makes go straight to the functions behind
-- ngx.req.is_internal, ngx.status, balancer.get_last_failure and
-- set_more_tries, with the request we already hold (the API would look it
-- up again, and ngx.status goes through a metatable). lua-resty-core
-- declares them alike in lua-nginx-module 0.10.23 and 0.10.31:
-- - int f(ngx_http_request_t *r) (is_internal, get_resp_status): returns
--   FFI_BAD_CONTEXT (-100) for a fake request (timers, init) and otherwise
--   r->internal (0, 1) or the response status (0 while unset);
-- - int f(r, ..., char **err) (get_last_failure, set_more_tries):
--   get_last_failure returns nginx's state of the previous try: 0 on a
--   first try (a new upstream request starts at 0), the NGX_PEER_* bits of
--   a failed one, FFI_ERROR (-1) outside the balancer.
local C = ffi.C
_M.C = C
_M.FFI_BAD_CONTEXT = -100
_M.FFI_ERROR = -1
_M.get_last_failure = C.ngx_http_lua_ffi_balancer_get_last_failure
_M.set_more_tries = C.ngx_http_lua_ffi_balancer_set_more_tries
_M.status_out = ffi.new("int[1]")
_M.errmsg = ffi.new("char *[1]")

-- What get_peer returns for "no live upstreams": nginx answers 502, as it
-- does for a static upstream whose servers are all down.
_M.NGX_BUSY = -3

-- A peer-less or broken upstream is logged at most this often per worker.
local QUIET = 10

local cast = ffi.cast
local uintptr_t = ffi.typeof("uintptr_t")

--- The request nginx is running, and its address (the key of the tries' states).
function _M.current_request()
  local r = get_request()
  return r, tonumber(cast(uintptr_t, r))
end

local function quiet_log(u, ...)
  local t = now()
  if t >= u.quiet_until then
    u.quiet_until = t + QUIET
    log.err(...)
  end
end
_M.quiet_log = quiet_log

--- The `back`-th entry from the end of an $upstream_* variable: entries are
--- separated by ", " (tries) or " : " (between upstreams, after an internal
--- redirect; in the balancer phase the try being chosen now is an empty last
--- entry). A separator's colon has a space after it, an address's never.
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
_M.nth_from_end = nth_from_end

--- Peer i's try failed for `why`: a passive report (a failure there must
--- not fail the request).
local function report(u, i, why)
  local ok, err = pcall(report_failure, u.name, u.list[i].id, why)
  if not ok then
    log.err('upstream "', u.name, '": recording a failed try failed: ', err)
  end
end

--- A try that ended badly: status code, and whether any response header came.
function _M.failed(u, i, code, back)
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
    report(u, i, why)
  end
end

--- A 2xx-4xx answer of peer i that the upstream cut short (see
--- gen_lb.balancer_tracked's body and log): a failed try.
function _M.cut_short(u, i)
  u.fails[i] = u.fails[i] + 1
  report(u, i, "response cut short")
end

-- set_current_peer refused peer i (gen_lb.peers lists IP literals only, so
-- it should not): that counts as the peer's failed try.
local function count_refusal(u, i, err)
  quiet_log(u, 'upstream "', u.name, '": set_current_peer(', u.list[i].id, ") failed: ", err,
    "; trying another peer")
  u.reqs[i] = u.reqs[i] + 1
  u.fails[i] = u.fails[i] + 1
  report(u, i, "set_current_peer: " .. tostring(err))
end

--- The rest of a pick, after the path's own first look (i = u.picker:find
--- (tried, n, key), then set_current_peer when i came, which refused it
--- with err): with no untried eligible peer (i nil), any eligible one again
--- when all were tried; a peer set_current_peer refuses counts as failed and
--- the request moves on to another in this same call: note(arg, i, tried,
--- n) adds the refused position i to the path's own tried list and returns
--- it (tried, n). Returns the position of the peer set, or nil when there is
--- none (the caller answers NGX_BUSY, 502).
function _M.pick_else(u, i, err, tried, n, key, note, arg)
  local picker = u.picker
  if not i and n > 0 then
    -- Every eligible peer was tried: any of them again.
    i, err = picker:find(tried, 0, key), nil
  end
  -- Each peer costs at most two steps: setting it, and its refusal.
  for _ = 0, 2 * u.n do
    if not i then
      if u.n == 0 then
        quiet_log(u, 'upstream "', u.name, '": no peers (Consul has not listed any); answering 502')
      end
      return nil
    end
    if err then
      count_refusal(u, i, err)
      tried, n = note(arg, i, tried, n)
      i, err = picker:find(tried, n, key), nil
    else
      local peer = u.list[i]
      local ok
      ok, err = set_current_peer(peer.addr, peer.port)
      if ok then
        return i
      end
    end
  end
  return nil
end

return _M
