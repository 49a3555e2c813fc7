-- gen_lb.tried: the peers a request has already tried, as every balancing
-- algorithm reads them: an array of peer indexes and its length, owned by the
-- caller and reused across requests.
local _M = { _VERSION = "0.1.0" }

--- Whether peer index i is among the first ntried entries of tried.
function _M.contains(tried, ntried, i)
  for k = 1, ntried do
    if tried[k] == i then
      return true
    end
  end
  return false
end

return _M
