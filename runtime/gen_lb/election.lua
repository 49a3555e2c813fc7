-- gen_lb.election: which worker of this node is the Consul watcher.
--
-- The holder's pid sits under one key of the locks dict with a TTL and is
-- renewed every tick. Every worker ticks; a worker takes the key when it is
-- free (the holder exited and released it, or stopped renewing it), or at
-- once when the holder's process no longer exists (a crashed worker), under a
-- short mutex so that only one worker replaces a dead holder.
local config = require "gen_lb.config"
local sys = require "gen_lb.sys"

local ngx = ngx
local worker_pid = ngx.worker.pid

local _M = { _VERSION = "0.1.0" }

local KEY = "gen_lb:watcher"
local MUTEX = "gen_lb:watcher:takeover"

--- Seconds a holder keeps the lease without renewing it.
_M.TTL = 5
--- Seconds between ticks (the caller's timer period).
_M.TICK = 1

local locks = ngx.shared[config.dicts.locks]

function _M.holder()
  return locks:get(KEY)
end

function _M.is_leader()
  return locks:get(KEY) == worker_pid()
end

--- One election round for this worker; returns whether it holds the lease.
function _M.tick()
  local pid = worker_pid()
  local holder = locks:get(KEY)
  if holder == pid then
    locks:set(KEY, pid, _M.TTL)
    return true
  end
  if holder == nil then
    return (locks:add(KEY, pid, _M.TTL)) == true
  end
  if sys.process_alive(holder) then
    return false
  end
  if not locks:add(MUTEX, pid, 2) then
    return false
  end
  local won = false
  if locks:get(KEY) == holder then
    locks:set(KEY, pid, _M.TTL)
    won = true
  end
  locks:delete(MUTEX)
  return won
end

--- Give up the lease (worker exiting), so another worker takes over at once.
function _M.release()
  if locks:get(KEY) == worker_pid() then
    locks:delete(KEY)
  end
end

return _M
