/* The roofline kernel, instantiated for every instruction set and storage combination. */
#include "common.h"

#define IMPL "roofline_loops.h"
#include "instances.h"

DEFINE_TABLE(roofline);
