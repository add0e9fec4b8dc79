/* One error record for every parser and loader that reports a message with a place in
 * the input: JSON (base/json), YAML (base/yaml), templates (ms/tmpl), scheduler configs
 * (sched). The message is complete on its own ("FILE:LINE:COL: why", "invalid JSON at
 * line L column C: why"); line and column repeat the place for callers that point at it
 * (0 when unknown). Written only on failure; plain data, no allocation. */
#ifndef TANDEM_BASE_ERR_H
#define TANDEM_BASE_ERR_H

struct errinfo {
    char msg[512];
    int line;   /* 1-based, 0 if unknown */
    int column; /* 1-based, 0 if unknown */
};

#endif
