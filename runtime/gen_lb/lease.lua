-- gen_lb.lease: which worker of this node holds a named lease (the Consul
-- watcher, the health checker).
--
-- Owns one key of the locks dict per lease (the holder's pid, with a TTL,
-- renewed every tick) and its takeover mutex; touches nothing else. A worker
-- takes the key when it is free (the holder exited and released it, or
-- stopped renewing it), or at once when the holder's process no longer
-- exists (a crashed worker), under a short mutex so that only one worker
-- replaces a dead holder.
local config = require "gen_lb.config"
local sys = require "gen_lb.sys"

local ngx = ngx
local worker_pid = ngx.worker.pid
local setmetatable = setmetatable

local _M = { _VERSION = "0.1.0" }
local mt = { __index = _M }

--- Seconds a holder keeps the lease without renewing it.
_M.TTL = 5
--- Seconds between ticks (the caller's timer period).
_M.TICK = 1
-- How long a takeover may hold its mutex.
local MUTEX_TTL = 2

local locks = ngx.shared[config.dicts.locks]

--- A lease under `key` of the locks dict.
function _M.new(key)
  return setmetatable({ key = key, mutex = key .. ":takeover" }, mt)
end

--- pid of the worker holding it (nil when none).
function _M.holder(self)
  return locks:get(self.key)
end

function _M.is_held(self)
  return locks:get(self.key) == worker_pid()
end

--- One round for this worker; returns whether it holds the lease.
function _M.tick(self)
  local key = self.key
  local pid = worker_pid()
  local holder = locks:get(key)
  if holder == pid then
    locks:set(key, pid, _M.TTL)
    return true
  end
  if holder == nil then
    return (locks:add(key, pid, _M.TTL)) == true
  end
  if sys.process_alive(holder) then
    return false
  end
  -- The holder died without releasing: one worker replaces it.
  if not locks:add(self.mutex, pid, MUTEX_TTL) then
    return false
  end
  local won = locks:get(key) == holder
  if won then
    locks:set(key, pid, _M.TTL)
  end
  locks:delete(self.mutex)
  return won
end

--- Give the lease up (worker exiting), so another worker takes over at once.
function _M.release(self)
  if locks:get(self.key) == worker_pid() then
    locks:delete(self.key)
  end
end

return _M
