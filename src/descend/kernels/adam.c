/* Adam and Adamax, instantiated for every instruction set and storage combination. */
#include "common.h"

#define IMPL "adam_loops.h"
#include "instances.h"

DEFINE_TABLE(adam);
DEFINE_TABLE(adamax);
