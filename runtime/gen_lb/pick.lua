-- gen_lb.pick: what every balancing algorithm needs alike. The tried peers
-- are an array of peer indexes and its length, owned by the caller and
-- reused across requests; the eligible set is built from a mask whenever
-- health changes (never per request).
--
-- Pure: touches nothing but its arguments.
local _M = { _VERSION = "0.1.0" }

--- Whether peer index i is among the first ntried entries of tried.
function _M.is_tried(tried, ntried, i)
  for k = 1, ntried do
    if tried[k] == i then
      return true
    end
  end
  return false
end

--- The indexes 1..n whose mask entry is set, and how many there are.
function _M.eligible(mask, n)
  local el, m = {}, 0
  for i = 1, n do
    if mask[i] then
      m = m + 1
      el[m] = i
    end
  end
  return el, m
end

return _M
