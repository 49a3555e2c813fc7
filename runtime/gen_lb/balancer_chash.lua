-- gen_lb.balancer_chash: consistent hashing with virtual nodes.
--
-- Every peer owns 160 points per unit of weight on a 32-bit ring (nginx's
-- `hash ... consistent` uses the same count); a key goes to the owner of the
-- first point at or after crc32(key). The points of a peer depend only on
-- its "host:port", so removing one of N peers moves only the keys it owned
-- (about 1/N) and every node and worker computes the same ring. An unhealthy
-- or already-tried peer is passed over by walking on along the ring, which
-- moves only that peer's keys.
--
-- The ring lives in two FFI arrays (point hashes, owners), sorted by a radix
-- sort when the peer list changes; a pick is crc32 plus a binary search.
--
-- Interface: see gen_lb.balancer_rr.
--
-- Owns its picker and ring; touches nothing else.
local ffi = require "ffi"
local bit = require "bit"

local ngx = ngx
local crc32 = ngx.crc32_short
local band, bxor, rshift, lshift, tobit = bit.band, bit.bxor, bit.rshift, bit.lshift, bit.tobit
local floor = math.floor
local max = math.max
local setmetatable = setmetatable

local is_tried = require("gen_lb.pick").is_tried
local eligible_of = require("gen_lb.pick").eligible
local _M = { _VERSION = "0.1.0" }

local mt = { __index = _M }

local POINTS_PER_WEIGHT = 160
local MAX_POINTS = 1024 * 1024
local TWO32 = 4294967296

local u32_array = ffi.typeof("uint32_t[?]")

-- 32-bit multiply (doubles would lose the low bits of the product).
local function imul(a, b)
  local al, ah = band(a, 0xffff), rshift(a, 16)
  local bl, bh = band(b, 0xffff), rshift(b, 16)
  return tobit(al * bl + lshift(tobit(ah * bl + al * bh), 16))
end

-- MurmurHash3's finaliser: spreads the points of one peer over the ring.
local function fmix32(h)
  h = bxor(h, rshift(h, 16))
  h = imul(h, 0x85ebca6b)
  h = bxor(h, rshift(h, 13))
  h = imul(h, 0xc2b2ae35)
  h = bxor(h, rshift(h, 16))
  if h < 0 then
    h = h + TWO32
  end
  return h
end
_M.fmix32 = fmix32

-- LSD radix sort of keys[0..n-1] (uint32) carrying vals, 16 bits per pass.
local function radix_sort(keys, vals, n)
  local tk, tv = u32_array(n), u32_array(n)
  local count = ffi.new("int32_t[65537]")
  local src_k, src_v, dst_k, dst_v = keys, vals, tk, tv
  for pass = 0, 1 do
    local shift = pass * 16
    ffi.fill(count, 65537 * 4)
    for j = 0, n - 1 do
      local d = band(rshift(src_k[j], shift), 0xffff) + 1
      count[d] = count[d] + 1
    end
    for d = 1, 65536 do
      count[d] = count[d] + count[d - 1]
    end
    for j = 0, n - 1 do
      local d = band(rshift(src_k[j], shift), 0xffff)
      local at = count[d]
      count[d] = at + 1
      dst_k[at] = src_k[j]
      dst_v[at] = src_v[j]
    end
    src_k, src_v, dst_k, dst_v = dst_k, dst_v, src_k, src_v
  end
  -- Two passes: the sorted data is back in keys/vals.
end

function _M.new(list)
  local n = #list
  local total = 0
  for i = 1, n do
    total = total + POINTS_PER_WEIGHT * (list[i].weight or 1)
  end
  local scale = total > MAX_POINTS and MAX_POINTS / total or 1
  local counts, npoints = {}, 0
  for i = 1, n do
    local c = max(1, floor(POINTS_PER_WEIGHT * (list[i].weight or 1) * scale))
    counts[i] = c
    npoints = npoints + c
  end
  local keys, vals = u32_array(max(npoints, 1)), u32_array(max(npoints, 1))
  local j = 0
  for i = 1, n do
    local base = crc32(list[i].id)
    for k = 1, counts[i] do
      keys[j] = fmix32(tobit(base + imul(k, 0x9e3779b9)))
      vals[j] = i
      j = j + 1
    end
  end
  if npoints > 1 then
    radix_sort(keys, vals, npoints)
  end
  return setmetatable({
    n = n,
    keys = keys,
    vals = vals,
    npoints = npoints,
    mask = {},
    eligible = {},
    m = 0,
  }, mt)
end

function _M.set_eligible(self, mask)
  local copy = {}
  for i = 1, self.n do
    copy[i] = mask[i] and true or false
  end
  local el, m = eligible_of(mask, self.n)
  self.mask, self.eligible, self.m = copy, el, m
end

--- The ring position a key hashes to (for tests): index of the first point >= crc32(key).
local function locate(self, key)
  local keys, n = self.keys, self.npoints
  local h = crc32(key)
  local lo, hi = 0, n
  while lo < hi do
    local mid = rshift(lo + hi, 1)
    if keys[mid] < h then
      lo = mid + 1
    else
      hi = mid
    end
  end
  if lo == n then
    lo = 0
  end
  return lo
end

function _M.find(self, tried, ntried, key)
  if self.m == 0 then
    return nil
  end
  if ntried > 0 then
    -- Walk the ring only when some eligible peer is still untried.
    local left = false
    local el = self.eligible
    for k = 1, self.m do
      if not is_tried(tried, ntried, el[k]) then
        left = true
        break
      end
    end
    if not left then
      return nil
    end
  end
  local vals, mask, n = self.vals, self.mask, self.npoints
  local pos = locate(self, key or "")
  for _ = 1, n do
    local i = vals[pos]
    if mask[i] and (ntried == 0 or not is_tried(tried, ntried, i)) then
      return i
    end
    pos = pos + 1
    if pos == n then
      pos = 0
    end
  end
  return nil
end

return _M
