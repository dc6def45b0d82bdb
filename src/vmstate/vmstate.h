// Umbrella header: everything a device needs to describe its migration state.
#pragma once

#include "vmstate/builders.h"
#include "vmstate/description.h"
#include "vmstate/snapshot.h"
#include "vmstate/binding.h"
