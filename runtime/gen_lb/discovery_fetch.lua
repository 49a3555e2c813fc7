-- gen_lb.discovery_fetch: Consul requests and sleeps the watcher can give
-- up on at once (worker exiting, watcher replaced), and the backoff its
-- loops wait after a failure. Owns nothing but the
-- light thread of the request in flight; touches only the client it is given.
local ngx = ngx
local spawn = ngx.thread.spawn
local kill = ngx.thread.kill
local wait_thread = ngx.thread.wait
local sleep = ngx.sleep
local min = math.min
local random = math.random
local pcall = pcall
local tostring = tostring

local _M = { _VERSION = "0.1.0" }

-- A query runs in a light thread while the loop waits on a semaphore in
-- one-second slices: the loop can then give up on a blocking query at once
-- (worker exiting, watcher replaced) by killing the thread, which also ends
-- its pending read. (Short read timeouts would do it too, but ngx_lua logs
-- each one as an error.)
local function fetch(client, path, wait, box, sema)
  local ok, res, err = pcall(client.get, client, path, wait)
  if ok then
    box.res, box.err = res, err
  else
    box.err = "client error: " .. tostring(res)
  end
  box.done = true
  sema:post(1)
end

--- client:get(path, wait), given up when abort() says so (checked every
--- second, woken by `sema` when the answer comes): res, err or nil, "aborted".
function _M.get(client, path, wait, abort, sema)
  local box = { done = false }
  local th, err = spawn(fetch, client, path, wait, box, sema)
  if not th then
    return nil, "cannot spawn a light thread: " .. tostring(err)
  end
  while not box.done do
    sema:wait(1)
    if not box.done and abort() then
      kill(th)
      pcall(client.close, client)
      return nil, "aborted"
    end
  end
  wait_thread(th)
  return box.res, box.err
end

-- ngx.sleep in slices, giving up early when `abort()` says so (worker
-- exiting, watcher replaced), so that no sleep holds a worker's exit.
function _M.nap(seconds, abort)
  while seconds > 0 do
    if abort and abort() then
      return
    end
    local slice = min(seconds, 0.5)
    sleep(slice)
    seconds = seconds - slice
  end
end

--- Seconds to wait after the n-th failure in a row: base * 2^(n-1), capped,
--- then jittered to 50-100 % so that loops do not retry in step.
function _M.backoff(n, base, cap)
  local d = min(cap, base * 2 ^ (n - 1))
  return d / 2 + random() * d / 2
end

return _M
