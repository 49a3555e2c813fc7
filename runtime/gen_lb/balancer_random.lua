-- gen_lb.balancer_random: weighted random choice.
--
-- Walker's alias method, built when the eligible set changes: a pick is one
-- uniform draw of a column and one biased coin, whatever the weights. A retry
-- draws again a few times and then takes the first untried eligible peer.
--
-- Interface: see gen_lb.balancer_rr.
--
-- Owns its picker; touches nothing else.
local random = math.random
local setmetatable = setmetatable

local is_tried = require("gen_lb.pick").is_tried
local eligible_of = require("gen_lb.pick").eligible
local _M = { _VERSION = "0.1.0" }

local mt = { __index = _M }

local REDRAWS = 8

function _M.new(list)
  local n = #list
  local self = setmetatable({ n = n, weight = {}, eligible = {}, prob = {}, alias = {}, m = 0 }, mt)
  for i = 1, n do
    self.weight[i] = list[i].weight or 1
  end
  self.own = self.weight
  return self
end

--- Weights other than the list's (gen_lb.slow_start's ramp; nil: the
--- list's again), taken at the next set_eligible.
function _M.set_weights(self, w)
  self.weight = w or self.own
end

-- Vose's construction of the alias table over the eligible peers.
function _M.set_eligible(self, mask)
  local el, m = eligible_of(mask, self.n)
  local total = 0
  for k = 1, m do
    total = total + self.weight[el[k]]
  end
  local prob, alias = {}, {}
  local small, large, ns, nl = {}, {}, 0, 0
  for k = 1, m do
    local p = self.weight[el[k]] * m / total
    prob[k] = p
    alias[k] = k
    if p < 1 then
      ns = ns + 1
      small[ns] = k
    else
      nl = nl + 1
      large[nl] = k
    end
  end
  while ns > 0 and nl > 0 do
    local s, l = small[ns], large[nl]
    ns, nl = ns - 1, nl - 1
    alias[s] = l
    prob[l] = prob[l] + prob[s] - 1
    if prob[l] < 1 then
      ns = ns + 1
      small[ns] = l
    else
      nl = nl + 1
      large[nl] = l
    end
  end
  -- Whatever is left is 1 up to rounding.
  for k = 1, nl do
    prob[large[k]] = 1
  end
  for k = 1, ns do
    prob[small[k]] = 1
  end
  self.eligible, self.m, self.prob, self.alias = el, m, prob, alias
end

local function draw(self)
  local k = random(self.m)
  if random() >= self.prob[k] then
    k = self.alias[k]
  end
  return self.eligible[k]
end

function _M.find(self, tried, ntried)
  local m = self.m
  if m == 0 then
    return nil
  end
  local i = draw(self)
  if ntried == 0 or not is_tried(tried, ntried, i) then
    return i
  end
  for _ = 2, REDRAWS do
    i = draw(self)
    if not is_tried(tried, ntried, i) then
      return i
    end
  end
  local el = self.eligible
  local start = random(m)
  for k = 0, m - 1 do
    i = el[(start + k - 1) % m + 1]
    if not is_tried(tried, ntried, i) then
      return i
    end
  end
  return nil
end

return _M
