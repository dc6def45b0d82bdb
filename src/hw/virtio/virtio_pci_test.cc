#include <gtest/gtest.h>
TEST(VirtioPciPlaceholder, Builds) {}
