# apsis_python_tests(FILE CLASS PREFIX ENV...): every `def test_...` of a unittest class in
# FILE (in the calling directory) becomes its own ctest entry PREFIX.<test>, labelled PREFIX,
# run with ENV set. A new test method cannot be left out of ctest.
find_package(Python3 REQUIRED COMPONENTS Interpreter)
function(apsis_python_tests file class prefix)
  file(STRINGS ${file} defs REGEX "^    def test_[a-z0-9_]+\\(")
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${file})
  get_filename_component(module ${file} NAME_WE)
  foreach(line IN LISTS defs)
    string(REGEX REPLACE "^    def (test_[a-z0-9_]+)\\(.*" "\\1" name "${line}")
    add_test(NAME ${prefix}.${name}
             COMMAND ${Python3_EXECUTABLE} -m unittest -v ${module}.${class}.${name}
             WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR})
    set_tests_properties(${prefix}.${name} PROPERTIES LABELS ${prefix} TIMEOUT 120 ENVIRONMENT "${ARGN}")
  endforeach()
endfunction()
