-- gen_lb.balancer_counters: the balancer's per-peer counters (tries,
-- failed tries, tries in flight), added to the health dict once a second.
--
-- Owns, in each upstream's balancer state u, the per-position arrays reqs,
-- fails, inflight (this worker's numbers; the balancer bumps them per try)
-- and flushed_inf, and the key caches req_keys, fail_keys, inf_keys; writes
-- the req|, fail| and inf<W>| keys of the health dict (names from
-- gen_lb.health.key). The status endpoint sums them.
local config = require "gen_lb.config"
local health = require "gen_lb.health"

local ngx = ngx
local hkey = health.key
local pairs = pairs

local _M = { _VERSION = "0.1.0" }

local hdict = ngx.shared[config.dicts.health]

local worker_id = 0

--- Fresh counters for a balancer state with no peers.
function _M.init(u)
  u.inflight, u.reqs, u.fails, u.flushed_inf = {}, {}, {}, {}
  u.req_keys, u.fail_keys, u.inf_keys = {}, {}, {}
end

--- Add this worker's numbers since the last flush to the dict.
function _M.flush(u)
  local list, reqs, fails, inflight, flushed = u.list, u.reqs, u.fails, u.inflight, u.flushed_inf
  for i = 1, u.n do
    local r, f, inf = reqs[i], fails[i], inflight[i]
    if r > 0 then
      local k = u.req_keys[i]
      if not k then
        k = hkey("req", u.name, list[i].id)
        u.req_keys[i] = k
      end
      hdict:incr(k, r, 0)
      reqs[i] = 0
    end
    if f > 0 then
      local k = u.fail_keys[i]
      if not k then
        k = hkey("fail", u.name, list[i].id)
        u.fail_keys[i] = k
      end
      hdict:incr(k, f, 0)
      fails[i] = 0
    end
    if inf ~= flushed[i] then
      local k = u.inf_keys[i]
      if not k then
        k = hkey("inf" .. worker_id, u.name, list[i].id)
        u.inf_keys[i] = k
      end
      if inf == 0 then
        hdict:delete(k)
      else
        hdict:set(k, inf)
      end
      flushed[i] = inf
    end
  end
end

--- The peer list changes to `list` (positions by id in `index`; u.index is
--- still the old one): counters carried over by peer id, gone peers' in-flight
--- keys deleted. The caller flushed first.
function _M.carry(u, list, index)
  local n = #list
  local old_index, old_inflight, old_flushed = u.index, u.inflight, u.flushed_inf
  local inflight, reqs, fails, flushed = {}, {}, {}, {}
  for i = 1, n do
    local o = old_index[list[i].id]
    inflight[i] = o and old_inflight[o] or 0
    flushed[i] = o and old_flushed[o] or 0
    reqs[i], fails[i] = 0, 0
  end
  for id, o in pairs(old_index) do
    if not index[id] and old_flushed[o] ~= 0 then
      hdict:delete(hkey("inf" .. worker_id, u.name, id))
    end
  end
  u.inflight, u.reqs, u.fails, u.flushed_inf = inflight, reqs, fails, flushed
  u.req_keys, u.fail_keys, u.inf_keys = {}, {}, {}
end

--- Exiting: this worker's in-flight numbers go (its successor reuses its id).
function _M.forget_in_flight(u)
  for i = 1, u.n do
    if u.flushed_inf[i] ~= 0 then
      hdict:delete(u.inf_keys[i] or hkey("inf" .. worker_id, u.name, u.list[i].id))
      u.flushed_inf[i] = 0
    end
  end
end

--- init_worker_by_lua (through gen_lb.balancer): this worker's id names its in-flight keys.
function _M.init_worker()
  worker_id = ngx.worker.id() or 0
end

return _M
