# `cmake --install`: libmeshllama.so and libmeshllama.a, include/meshllama.h, the `meshllama`
# command and lib/pkgconfig/meshllama.pc. Included from the top CMakeLists.txt after the targets
# meshllama, meshllama_static and meshllama_cli exist. tests/install_check.sh installs into a
# temporary prefix and builds a C program against the installed copy through pkg-config.
include(GNUInstallDirs)

install(TARGETS meshllama meshllama_static
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(TARGETS meshllama_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES ${CMAKE_SOURCE_DIR}/include/meshllama.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})

# What a static link needs besides libmeshllama.a: pkg-config modules where they exist, flags
# otherwise (MPI only when the mpi backend was built).
set(MESHLLAMA_PC_REQUIRES "jansson libpcre2-8")
set(MESHLLAMA_PC_LIBS_PRIVATE "-lpthread -lm")
if(MESHLLAMA_HAVE_MPI)
  pkg_check_modules(MESHLLAMA_MPI_PC QUIET ompi-c)
  if(MESHLLAMA_MPI_PC_FOUND)
    string(APPEND MESHLLAMA_PC_REQUIRES " ompi-c")
  else()
    foreach(lib ${MPI_C_LIBRARIES})
      string(APPEND MESHLLAMA_PC_LIBS_PRIVATE " ${lib}")
    endforeach()
  endif()
endif()
file(RELATIVE_PATH MESHLLAMA_PC_UP "/root/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/root")
string(REGEX REPLACE "/$" "" MESHLLAMA_PC_UP "${MESHLLAMA_PC_UP}")
configure_file(${CMAKE_SOURCE_DIR}/cmake/meshllama.pc.in ${CMAKE_BINARY_DIR}/meshllama.pc @ONLY)
install(FILES ${CMAKE_BINARY_DIR}/meshllama.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

if(MESHLLAMA_SANITIZE)
  set(MESHLLAMA_INSTALL_CHECK_CFLAGS "-fsanitize=address,undefined")
else()
  set(MESHLLAMA_INSTALL_CHECK_CFLAGS "")
endif()
add_test(NAME install_check
         COMMAND bash ${CMAKE_SOURCE_DIR}/tests/install_check.sh ${CMAKE_BINARY_DIR}
                 ${CMAKE_CURRENT_BINARY_DIR}/tests/tmp/install "${MESHLLAMA_INSTALL_CHECK_CFLAGS}")
set_tests_properties(install_check PROPERTIES
  ENVIRONMENT "MESHLLAMA_FIXTURES=${CMAKE_SOURCE_DIR}/tests/fixtures;MESHLLAMA_BIN=$<TARGET_FILE:meshllama_cli>"
  TIMEOUT 300 SKIP_RETURN_CODE 77)
