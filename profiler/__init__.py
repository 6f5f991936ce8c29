"""servesim profiler: measures real step time against batch size on a device (the only package importing torch)."""
