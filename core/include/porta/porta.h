/* porta: a portable compute library for transformer inference with a KV cache. */
#ifndef PORTA_PORTA_H
#define PORTA_PORTA_H

#include "porta/status.h"
#include "porta/backend.h"
#include "porta/kvcache.h"
#include "porta/graph.h"
#include "porta/program.h"

#define PORTA_VERSION_MAJOR 0
#define PORTA_VERSION_MINOR 1
#define PORTA_VERSION_PATCH 0

#endif
