/* Fuzz target: the ShareGPT dataset reader of tandem bench (a user-supplied JSON file).
 * The input is written to a temporary file and loaded; any error must be a message,
 * never a crash, and loaded prompts must have the counts they claim. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/bench.h"
#include "tokenize/tokenize.h"

static char path[64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!path[0]) {
        snprintf(path, sizeof path, "/tmp/tandem-fuzz-sharegpt-XXXXXX");
        int fd = mkstemp(path);
        if (fd < 0)
            abort();
        close(fd);
    }
    FILE *f = fopen(path, "wb");
    if (!f)
        abort();
    if (size && fwrite(data, 1, size, f) != size)
        abort();
    fclose(f);
    struct bench_dataset_opts o;
    bench_dataset_opts_defaults(&o);
    o.name = "sharegpt";
    o.path = path;
    o.num_prompts = 0;
    o.seed = size;
    struct bench_dataset d = {0};
    char err[256];
    if (bench_dataset_load(&o, &d, err, sizeof err)) {
        for (size_t i = 0; i < d.n; i++)
            if (d.prompts[i].input_tokens != tok_count(d.prompts[i].text, d.prompts[i].text_len))
                abort();
        bench_dataset_free(&d);
    } else if (!strstr(err, path) && !strstr(err, "--")) {
        abort(); /* every error names the file (or the flag) */
    }
    return 0;
}
