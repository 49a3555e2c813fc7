-- gen_lb.balancer_rr: smooth weighted round robin, nginx's own algorithm.
--
-- nginx adds every peer's weight to its current weight, picks the largest and
-- takes the total off it. Over sum(weights) picks that sequence repeats, so
-- when the eligible set changes the whole period is computed once and a pick
-- is an array read. A period too long to precompute (large, uneven weights on
-- many peers) falls back to nginx's per-pick scan over the eligible peers.
--
-- Interface shared by every algorithm module (see gen_lb.balancer):
--   new(list, inflight) -> picker        when the peer list changes
--   picker:set_eligible(mask, count)     when health changes; mask[i] true = may get traffic
--   picker:find(tried, ntried, key)      -> index into list, or nil when every
--                                           eligible peer is in tried[1..ntried]
--
-- Owns its picker; touches nothing else (no I/O, no shared dicts).
local random = math.random
local setmetatable = setmetatable

local is_tried = require("gen_lb.pick").is_tried
local eligible_of = require("gen_lb.pick").eligible
local _M = { _VERSION = "0.1.0" }

local mt = { __index = _M }

-- Precompute the period while it costs at most this many steps (peers x period).
local MAX_BUILD_STEPS = 4 * 1024 * 1024
local MAX_PERIOD = 256 * 1024

local function gcd(a, b)
  while b ~= 0 do
    a, b = b, a % b
  end
  return a
end

function _M.new(list)
  local n = #list
  local self = setmetatable({
    n = n,
    weight = {},     -- weight[i]
    current = {},    -- scan mode: nginx's current_weight[i]
    eligible = {},   -- eligible[1..m]: peer indexes
    m = 0,
    sched = {},      -- sched[1..period]: peer indexes in smooth-WRR order
    period = 0,
    pos = 0,
    scan = false,
  }, mt)
  for i = 1, n do
    self.weight[i] = list[i].weight or 1
    self.current[i] = 0
  end
  self.own = self.weight
  return self
end

--- Weights other than the list's (gen_lb.slow_start's ramp; nil: the
--- list's again), taken at the next set_eligible.
function _M.set_weights(self, w)
  self.weight = w or self.own
end

local function build_schedule(self)
  local el, m, weight = self.eligible, self.m, self.weight
  local g = 0
  local same = true
  for k = 1, m do
    local w = weight[el[k]]
    g = gcd(w, g)
    if w ~= weight[el[1]] then
      same = false
    end
  end
  local sched = {}
  if same then
    -- Equal weights: the smooth sequence is the peers in order.
    for k = 1, m do
      sched[k] = el[k]
    end
    return sched, m
  end
  local period = 0
  for k = 1, m do
    period = period + weight[el[k]] / g
  end
  if period > MAX_PERIOD or period * m > MAX_BUILD_STEPS then
    return nil
  end
  local cw, w = {}, {}
  for k = 1, m do
    cw[k] = 0
    w[k] = weight[el[k]] / g
  end
  for s = 1, period do
    local best = 1
    for k = 1, m do
      cw[k] = cw[k] + w[k]
      if cw[k] > cw[best] then
        best = k
      end
    end
    cw[best] = cw[best] - period
    sched[s] = el[best]
  end
  return sched, period
end

function _M.set_eligible(self, mask, count)
  local el, m = eligible_of(mask, self.n)
  for k = 1, m do
    self.current[el[k]] = 0
  end
  self.eligible, self.m = el, m
  local sched, period = nil, 0
  if m > 0 then
    sched, period = build_schedule(self)
  end
  if sched then
    self.sched, self.period, self.scan = sched, period, false
    -- Each worker starts somewhere else in the period, so that N workers do
    -- not all send their first request to the same peer.
    self.pos = random(period) - 1
  else
    self.sched, self.period, self.scan = nil, 0, m > 0
  end
  return count
end

-- nginx's ngx_http_upstream_get_peer, over the eligible peers not yet tried.
local function scan(self, tried, ntried)
  local el, weight, current = self.eligible, self.weight, self.current
  local best, total = nil, 0
  for k = 1, self.m do
    local i = el[k]
    if ntried == 0 or not is_tried(tried, ntried, i) then
      current[i] = current[i] + weight[i]
      total = total + weight[i]
      if best == nil or current[i] > current[best] then
        best = i
      end
    end
  end
  if best then
    current[best] = current[best] - total
  end
  return best
end

function _M.find(self, tried, ntried)
  local period = self.period
  if period == 0 then
    if self.scan then
      return scan(self, tried, ntried)
    end
    return nil
  end
  local sched = self.sched
  local pos = self.pos % period + 1
  self.pos = pos
  local i = sched[pos]
  if ntried == 0 or not is_tried(tried, ntried, i) then
    return i
  end
  -- A retry: the next entries of the period that were not tried yet.
  for _ = 2, period do
    pos = pos % period + 1
    i = sched[pos]
    if not is_tried(tried, ntried, i) then
      self.pos = pos
      return i
    end
  end
  return nil
end

return _M
