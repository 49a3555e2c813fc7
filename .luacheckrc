-- luacheck config for the generated runtime (runtime/).
std = "ngx_lua"
max_line_length = 120
codes = true
