"""Line-signal analysis: pure numpy, frame by frame, no I/O and no knowledge of calls."""
