-- gen_lb.status: the status endpoint (content_by_lua).
local cjson = require "cjson.safe"
local config = require "gen_lb.config"

local _M = { _VERSION = "0.1.0" }

function _M.serve()
  ngx.header["Content-Type"] = "application/json"
  ngx.say(cjson.encode({ build_id = config.build_id, generator = config.generator }))
end

return _M
