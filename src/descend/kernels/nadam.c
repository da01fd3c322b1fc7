/* NAdam and RAdam, instantiated for every instruction set and storage combination. */
#include "common.h"

#define IMPL "nadam_loops.h"
#include "instances.h"

DEFINE_TABLE(nadam);
DEFINE_TABLE(radam);
