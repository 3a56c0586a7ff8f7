package supervise

import "time"

// outputTail is how much of the end of an instance's log a crash loop keeps as evidence.
const outputTail = 4096

// logCheckEvery is how often the size of a running instance's log is checked
// for rotation (copy-truncate); the file may exceed max_size by what the
// instance writes in that time.
const logCheckEvery = time.Second
