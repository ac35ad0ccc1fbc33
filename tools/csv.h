/* The forecast tool's CSV input: an optional header, an optional timestamp
 * column (a non-numeric first column), one numeric column per variate. */
#ifndef PORTA_TOOLS_CSV_H
#define PORTA_TOOLS_CSV_H

#include "porta/status.h"

typedef struct csv_table {
    int rows, cols;  /* numeric data: rows x cols, row-major */
    float *data;
    char **names;    /* cols names (from the header, else "v0", "v1", ...) */
    char **stamps;   /* rows timestamps, or NULL without a timestamp column */
} csv_table;

/* Reads a CSV file ("-": stdin). On failure err holds a message with the line. */
porta_status csv_read(const char *path, csv_table *t, char *err, int errlen);
void csv_free(csv_table *t);

#endif
