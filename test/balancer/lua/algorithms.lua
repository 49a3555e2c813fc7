-- Test driver for the balancer algorithm modules, run inside the real nginx
-- (content_by_lua) so that ngx.crc32_short, LuaJIT and the FFI are the real
-- ones. GET /_alg?t=NAME answers the JSON result of tests[NAME]().
local cjson = require "cjson.safe"
local balancer = require "gen_lb.balancer"

local algorithms = balancer.algorithms

local _M = {}

local function list_of(weights, base_port)
  local list = {}
  for i, w in ipairs(weights) do
    local port = (base_port or 10000) + i
    list[i] = { host = "127.0.0.1", port = port, weight = w, id = "127.0.0.1:" .. port }
  end
  return list
end

local function all_mask(n)
  local mask = {}
  for i = 1, n do
    mask[i] = true
  end
  return mask
end

local function picker(algo, weights, inflight)
  local list = list_of(weights)
  local p = algorithms[algo].new(list, inflight or {})
  p:set_eligible(all_mask(#list), #list)
  return p, list
end

local tests = {}

-- nginx's documented smooth sequence for weights {5, 1, 1}: a a b a c a a.
function tests.rr_sequence()
  local p = picker("round_robin", { 5, 1, 1 })
  p.pos = 0
  local seq = {}
  for i = 1, 14 do
    seq[i] = p:find({}, 0)
  end
  return { seq = seq, scan = p.scan, period = p.period }
end

-- Too long a period to precompute: nginx's per-pick scan, same counts per period.
function tests.rr_scan()
  local weights = {}
  local total = 0
  for i = 1, 3000 do
    weights[i] = (i * 7919) % 97 + 1
    total = total + weights[i]
  end
  local p = picker("round_robin", weights)
  local counts = {}
  for _ = 1, total do
    local i = p:find({}, 0)
    counts[i] = (counts[i] or 0) + 1
  end
  local exact = true
  for i = 1, #weights do
    if counts[i] ~= weights[i] then
      exact = false
    end
  end
  return { scan = p.scan, exact = exact, total = total }
end

-- Unhealthy peers leave the period; tried ones are skipped on a retry.
function tests.eligible_and_tried()
  local out = {}
  for name in pairs(algorithms) do
    local p = picker(name, { 1, 2, 3, 4 }, { 0, 0, 0, 0 })
    p:set_eligible({ true, false, true, true }, 3)
    local bad = 0
    for r = 1, 2000 do
      local key = "k" .. r
      local i = p:find({}, 0, key)
      if i == 2 then
        bad = bad + 1
      end
      -- A retry after 1 and 3 failed: only 4 is left.
      local j = p:find({ 1, 3 }, 2, key)
      if j ~= 4 then
        bad = bad + 1
      end
      -- Every eligible peer tried: nil, so the caller may repeat one.
      if p:find({ 1, 3, 4 }, 3, key) ~= nil then
        bad = bad + 1
      end
    end
    p:set_eligible({ false, false, false, false }, 0)
    out[name] = { bad = bad, none = p:find({}, 0, "x") == nil }
  end
  return out
end

-- Weighted shares over many picks.
function tests.shares()
  local out = {}
  for name in pairs(algorithms) do
    local inflight = { 0, 0 }
    local p = picker(name, { 1, 3 }, inflight)
    local counts = { 0, 0 }
    local n = 40000
    for r = 1, n do
      local i = p:find({}, 0, "key" .. r)
      counts[i] = counts[i] + 1
    end
    out[name] = counts[1] / n
  end
  return out
end

function tests.least_conn()
  local inflight = { 3, 0, 1 }
  local p = picker("least_conn", { 1, 1, 1 }, inflight)
  local a = p:find({}, 0)
  local b = p:find({ 2 }, 1)
  -- conns/weight: 2/4 beats 1/1
  local inflight2 = { 2, 1 }
  local q = picker("least_conn", { 4, 1 }, inflight2)
  local c = q:find({}, 0)
  -- Equal load: weights decide (smooth WRR among the tied peers).
  local inflight3 = { 0, 0 }
  local r = picker("least_conn", { 1, 3 }, inflight3)
  local counts = { 0, 0 }
  for _ = 1, 400 do
    local i = r:find({}, 0)
    counts[i] = counts[i] + 1
  end
  -- Follows in-flight counts as they change.
  local inflight4 = { 0, 0, 0 }
  local s = picker("least_conn", { 1, 1, 1 }, inflight4)
  local seen = {}
  for k = 1, 3 do
    local i = s:find({}, 0)
    inflight4[i] = inflight4[i] + 1
    seen[k] = i
  end
  return { a = a, b = b, c = c, tie_counts = counts, spread = seen }
end

function tests.chash()
  local keys = {}
  for k = 1, 1000 do
    keys[k] = "user-" .. k
  end
  local function owners(weights, skip_port)
    local list = list_of(weights)
    if skip_port then
      table.remove(list, skip_port)
    end
    local p = algorithms.chash.new(list)
    p:set_eligible(all_mask(#list), #list)
    local out = {}
    for k, key in ipairs(keys) do
      out[k] = list[p:find({}, 0, key)].id
    end
    return out, p
  end
  local five = owners({ 1, 1, 1, 1, 1 })
  local again = owners({ 1, 1, 1, 1, 1 })
  local four = owners({ 1, 1, 1, 1, 1 }, 3)
  local same, moved, counts = true, 0, {}
  for k = 1, #keys do
    if five[k] ~= again[k] then
      same = false
    end
    if five[k] ~= four[k] then
      moved = moved + 1
    end
    counts[five[k]] = (counts[five[k]] or 0) + 1
  end
  -- Only the removed peer's keys may move.
  local stray = 0
  for k = 1, #keys do
    if five[k] ~= four[k] and five[k] ~= "127.0.0.1:10003" then
      stray = stray + 1
    end
  end
  -- An unhealthy peer's keys go elsewhere; the others stay.
  local list = list_of({ 1, 1, 1, 1, 1 })
  local p = algorithms.chash.new(list)
  p:set_eligible({ true, true, false, true, true }, 4)
  local down_moved = 0
  for k, key in ipairs(keys) do
    local id = list[p:find({}, 0, key)].id
    if id ~= five[k] and five[k] ~= "127.0.0.1:10003" then
      down_moved = down_moved + 1
    end
    if id == "127.0.0.1:10003" then
      down_moved = down_moved + 1000
    end
  end
  -- 100 peers: removing one moves about 1 %.
  local w100 = {}
  for i = 1, 100 do
    w100[i] = 1
  end
  local hundred = owners(w100)
  local ninety_nine = owners(w100, 50)
  local moved100 = 0
  for k = 1, #keys do
    if hundred[k] ~= ninety_nine[k] then
      moved100 = moved100 + 1
    end
  end
  local min_c, max_c = math.huge, 0
  for _, c in pairs(counts) do
    min_c, max_c = math.min(min_c, c), math.max(max_c, c)
  end
  return { same = same, moved = moved, stray = stray, down_moved = down_moved, moved100 = moved100,
    min = min_c, max = max_c }
end

-- The pick allocates nothing: GC stopped, memory before and after 100k picks.
function tests.allocation()
  local out = {}
  local keys = {}
  for k = 1, 64 do
    keys[k] = "key-" .. k
  end
  local tried = { 0, 0, 0 }
  for name in pairs(algorithms) do
    local weights = {}
    for i = 1, 1000 do
      weights[i] = (i % 5) + 1
    end
    local inflight = {}
    for i = 1, 1000 do
      inflight[i] = i % 3
    end
    local p = picker(name, weights, inflight)
    local function picks(n)
      for r = 1, n do
        local i = p:find(tried, 0, keys[r % 64 + 1])
        tried[1] = i
        p:find(tried, 1, keys[r % 64 + 1])
      end
    end
    -- Warm up first: compiling traces allocates (trace objects live on the GC
    -- heap), and a late side trace may still be compiled in a measured round
    -- (random branches get hot at random times): the least of three rounds,
    -- in bytes per pick.
    picks(50000)
    local least = math.huge
    for _ = 1, 3 do
      collectgarbage("collect")
      collectgarbage("stop")
      local before = collectgarbage("count")
      picks(50000)
      local after = collectgarbage("count")
      collectgarbage("restart")
      least = math.min(least, (after - before) * 1024)
    end
    out[name] = least / 100000
  end
  return out
end

-- Build cost of a 1,000-peer list per algorithm (milliseconds), for information.
function tests.build_cost()
  local out = {}
  for name in pairs(algorithms) do
    local weights = {}
    for i = 1, 1000 do
      weights[i] = (i % 7) + 1
    end
    ngx.update_time()
    local t0 = ngx.now()
    picker(name, weights, {})
    ngx.update_time()
    out[name] = (ngx.now() - t0) * 1000
  end
  return out
end

function _M.run()
  local t = tests[ngx.var.arg_t]
  if not t then
    ngx.status = 404
    ngx.say("no test ", ngx.var.arg_t)
    return
  end
  ngx.header["Content-Type"] = "application/json"
  ngx.say(cjson.encode(t()))
end

return _M
