require("gen_lb_bench.bare").balance("small")
