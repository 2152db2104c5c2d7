# ctest helper (cmake/layers.cmake): builds TARGET in BUILD_DIR and passes only when the build
# fails with output matching EXPECT, so a probe that fails for another reason is not a pass.
#   cmake -DBUILD_DIR=... -DTARGET=... -DEXPECT=regex -P expect_build_failure.cmake
execute_process(COMMAND ${CMAKE_COMMAND} --build ${BUILD_DIR} --target ${TARGET}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc EQUAL 0)
  message(FATAL_ERROR "${TARGET} built, but the layering must make it fail (${EXPECT})")
endif()
if(NOT "${out}${err}" MATCHES "${EXPECT}")
  message(FATAL_ERROR "${TARGET} failed, but not with \"${EXPECT}\":\n${out}${err}")
endif()
message(STATUS "${TARGET} failed as it must: ${CMAKE_MATCH_0}")
