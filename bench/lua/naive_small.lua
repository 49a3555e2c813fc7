require("gen_lb_bench.naive").balance("small")
