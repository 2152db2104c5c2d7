# The layers of the code (DESIGN.md "Layers of the code"), enforced by the build: each folder is
# one object library that sees only its own headers and those of the layers above it (a wrong
# #include fails to compile), and a shared-library link check per layer, with --no-undefined,
# holds only its objects and those of the layers above (a wrong call fails to link).
# libmeshllama.so/.a are the union of the layers, as before.
#
#   meshllama_layers(LIBS <external libraries every layer may use>)
# defines ml_layer_<name> for name in MESHLLAMA_LAYERS and MESHLLAMA_LAYER_OBJECTS (their objects).

set(MESHLLAMA_LAYERS core formats tokenizer mesh backend_cpu model runtime)
set(MESHLLAMA_LAYER_DIR_core core)
set(MESHLLAMA_LAYER_DIR_formats formats)
set(MESHLLAMA_LAYER_DIR_tokenizer tokenizer)
set(MESHLLAMA_LAYER_DIR_mesh mesh)
set(MESHLLAMA_LAYER_DIR_backend_cpu backend/cpu)
set(MESHLLAMA_LAYER_DIR_model model)
set(MESHLLAMA_LAYER_DIR_runtime runtime)

# build/layer_include/<layer>/: links to the source folders <layer> may include, and nothing else.
function(meshllama_layer_include_tree layer allowed out_dir)
  set(tree ${CMAKE_BINARY_DIR}/layer_include/${layer})
  foreach(name ${allowed})
    set(dir ${MESHLLAMA_LAYER_DIR_${name}})
    get_filename_component(parent ${tree}/${dir} DIRECTORY)
    file(MAKE_DIRECTORY ${parent})
    if(NOT IS_SYMLINK ${tree}/${dir})
      file(CREATE_LINK ${CMAKE_SOURCE_DIR}/${dir} ${tree}/${dir} SYMBOLIC)
    endif()
  endforeach()
  set(${out_dir} ${tree} PARENT_SCOPE)
endfunction()

# Compile options of a layer's sources: kernel variants for their ISA (backend/cpu/dispatch.c
# chooses at run time).
function(meshllama_isa_options sources)
  foreach(src ${sources})
    if(src MATCHES "_avx512vnni\\.c$")
      set_source_files_properties(${src} PROPERTIES COMPILE_OPTIONS
        "-mavx512f;-mavx512bw;-mavx512vl;-mavx512dq;-mavx512vnni;-mfma;-mf16c;-mavx2")
    elseif(src MATCHES "_avx512\\.c$")
      set_source_files_properties(${src} PROPERTIES COMPILE_OPTIONS
        "-mavx512f;-mavx512bw;-mavx512vl;-mavx512dq;-mavx512bf16;-mfma;-mf16c;-mavx2")
    elseif(src MATCHES "_avx2\\.c$")
      set_source_files_properties(${src} PROPERTIES COMPILE_OPTIONS "-mavx2;-mfma;-mf16c")
    endif()
  endforeach()
endfunction()

function(meshllama_layers)
  cmake_parse_arguments(ARG "" "" "LIBS;EXTRA_SOURCES_mesh" ${ARGN})
  set(allowed)
  set(objects)
  foreach(layer ${MESHLLAMA_LAYERS})
    list(APPEND allowed ${layer})
    file(GLOB sources CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/${MESHLLAMA_LAYER_DIR_${layer}}/*.c)
    if(layer STREQUAL "mesh")
      list(APPEND sources ${ARG_EXTRA_SOURCES_mesh})
    endif()
    meshllama_isa_options("${sources}")
    meshllama_layer_include_tree(${layer} "${allowed}" tree)
    add_library(ml_layer_${layer} OBJECT ${sources})
    target_include_directories(ml_layer_${layer} PRIVATE ${tree} ${CMAKE_SOURCE_DIR}/include)
    target_link_libraries(ml_layer_${layer} PUBLIC ${ARG_LIBS})
    set_property(GLOBAL PROPERTY MESHLLAMA_LAYER_TREE_${layer} ${tree})
    list(APPEND objects $<TARGET_OBJECTS:ml_layer_${layer}>)
    meshllama_layer_link_check(ml_layer_check_${layer} "${objects}" "${ARG_LIBS}" ALL)
  endforeach()
  set(MESHLLAMA_LAYER_OBJECTS ${objects} PARENT_SCOPE)
endfunction()

# A shared library of objects that must resolve every symbol among themselves and libs.
# Sanitizer builds skip it (their runtimes' symbols resolve only in the final executables), and
# so does the Python package's build (it wants libmeshllama.so alone).
function(meshllama_layer_link_check name objects libs all)
  if(MESHLLAMA_SANITIZE OR MESHLLAMA_PYTHON)
    return()
  endif()
  if(all STREQUAL "ALL")
    add_library(${name} SHARED ${objects})
  else()
    add_library(${name} SHARED EXCLUDE_FROM_ALL ${objects})
  endif()
  target_link_libraries(${name} PRIVATE ${libs})
  target_link_options(${name} PRIVATE -Wl,--no-undefined)
  set_target_properties(${name} PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/layer_check)
endfunction()

# Tests that the enforcement works: a formats/ file including a model/ header fails to compile
# with formats' include tree, the same file including core/ compiles, and a formats/ object
# calling a model/ function fails the formats link check.
function(meshllama_layering_tests)
  get_property(formats_tree GLOBAL PROPERTY MESHLLAMA_LAYER_TREE_formats)
  set(dir ${CMAKE_SOURCE_DIR}/tests/layering)
  foreach(probe formats_includes_model formats_includes_core formats_calls_model)
    add_library(layering_${probe} OBJECT EXCLUDE_FROM_ALL ${dir}/${probe}.c)
    target_include_directories(layering_${probe} PRIVATE ${formats_tree} ${CMAKE_SOURCE_DIR}/include)
    target_link_libraries(layering_${probe} PRIVATE PkgConfig::JANSSON)
  endforeach()
  meshllama_layer_link_check(layering_link_formats_calls_model
    "$<TARGET_OBJECTS:ml_layer_core>;$<TARGET_OBJECTS:ml_layer_formats>;$<TARGET_OBJECTS:layering_formats_calls_model>"
    "PkgConfig::JANSSON;Threads::Threads;m" NOT_ALL)
  set(expect ${CMAKE_SOURCE_DIR}/cmake/expect_build_failure.cmake)
  add_test(NAME layering_wrong_include_fails
    COMMAND ${CMAKE_COMMAND} -DBUILD_DIR=${CMAKE_BINARY_DIR} -DTARGET=layering_formats_includes_model
            "-DEXPECT=model/model_internal.h: No such file" -P ${expect})
  add_test(NAME layering_allowed_include_builds
    COMMAND ${CMAKE_COMMAND} --build ${CMAKE_BINARY_DIR} --target layering_formats_includes_core)
  set(tests layering_wrong_include_fails layering_allowed_include_builds)
  if(TARGET layering_link_formats_calls_model)
    add_test(NAME layering_wrong_call_fails_to_link
      COMMAND ${CMAKE_COMMAND} -DBUILD_DIR=${CMAKE_BINARY_DIR} -DTARGET=layering_link_formats_calls_model
              "-DEXPECT=undefined reference to .ml_model_broadcast" -P ${expect})
    list(APPEND tests layering_wrong_call_fails_to_link)
  endif()
  # they share the build tree: one at a time
  set_tests_properties(${tests} PROPERTIES RESOURCE_LOCK layering_build)
endfunction()
