-- gen_lb.balancer_least_conn: fewest in-flight requests relative to weight,
-- as nginx's least_conn does it: the peer with the smallest conns/weight
-- wins, and peers that tie share by smooth weighted round robin. The counts
-- are this worker's in-flight requests, kept by gen_lb.balancer (incremented
-- when a peer is picked, decremented when the try ends) in the `inflight`
-- array handed to new().
--
-- Interface: see gen_lb.balancer_rr.
--
-- Owns its picker; reads the `inflight` array, touches nothing else.
local setmetatable = setmetatable

local is_tried = require("gen_lb.pick").is_tried
local eligible_of = require("gen_lb.pick").eligible
local _M = { _VERSION = "0.1.0" }

local mt = { __index = _M }

function _M.new(list, inflight)
  local n = #list
  local self = setmetatable({
    n = n,
    weight = {},
    current = {},
    conns = inflight,
    eligible = {},
    m = 0,
  }, mt)
  for i = 1, n do
    self.weight[i] = list[i].weight or 1
    self.current[i] = 0
  end
  return self
end

function _M.set_eligible(self, mask)
  local el, m = eligible_of(mask, self.n)
  for k = 1, m do
    self.current[el[k]] = 0
  end
  self.eligible, self.m = el, m
end

function _M.find(self, tried, ntried)
  local el, weight, conns = self.eligible, self.weight, self.conns
  local best, many = nil, false
  for k = 1, self.m do
    local i = el[k]
    if ntried == 0 or not is_tried(tried, ntried, i) then
      if best == nil then
        best = i
      else
        -- conns[i]/weight[i] < conns[best]/weight[best], without division.
        local a, b = conns[i] * weight[best], conns[best] * weight[i]
        if a < b then
          best, many = i, false
        elseif a == b then
          many = true
        end
      end
    end
  end
  if not many then
    return best
  end
  -- Ties: smooth weighted round robin among the peers with the best ratio.
  local current = self.current
  local cb, wb = conns[best], weight[best]
  local pick, total = nil, 0
  for k = 1, self.m do
    local i = el[k]
    if conns[i] * wb == cb * weight[i] and (ntried == 0 or not is_tried(tried, ntried, i)) then
      current[i] = current[i] + weight[i]
      total = total + weight[i]
      if pick == nil or current[i] > current[pick] then
        pick = i
      end
    end
  end
  current[pick] = current[pick] - total
  return pick
end

return _M
