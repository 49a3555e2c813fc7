local _ = 0
