-- gen_lb.runtime: init_by_lua / init_worker_by_lua entry points.
-- Placeholder until discovery lands: validates the shared dicts exist.
local config = require "gen_lb.config"

local _M = { _VERSION = "0.1.0" }

function _M.init()
  for _, name in pairs(config.dicts) do
    if not ngx.shared[name] then
      error("gen-lb: lua_shared_dict " .. name .. " is not declared")
    end
  end
end

function _M.init_worker()
end

return _M
